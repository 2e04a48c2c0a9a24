package main

import (
	"os"
	"runtime/debug"
)

// limitMemoryFor sets the garbage collector's soft memory limit for a
// command that holds zone files of about input bytes in memory, unless
// the operator set GOMEMLIMIT. A zone is held packed at about 1.3 times
// its text size; without a limit the collector lets the heap grow to twice
// what is live before it runs, which doubles the peak of a one-shot check
// for no benefit (BENCHMARKS.md: 1.11 GB against 0.77 GB on a
// million-delegation TLD, the same time within 4%). A soft limit is only a
// target: a zone that needs more gets it, with the collector working
// harder.
func limitMemoryFor(input int64) {
	if os.Getenv("GOMEMLIMIT") != "" || input <= 0 {
		return
	}
	const floor = 96 << 20
	debug.SetMemoryLimit(max(floor, input*7/4+64<<20))
}

// fileSizes is the total size of the regular files among paths ("" and
// unreadable ones count 0).
func fileSizes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
