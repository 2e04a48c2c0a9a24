package backup

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// WAL segment names are 24 hex digits: timeline, log, segment. With the
// default 16 MB segments the segment part runs 00000000-000000FF; regdr
// assumes the default (initdb --wal-segsize is not used by the lab).
const segmentsPerLog = 0x100

func isSegmentName(s string) bool {
	if len(s) != 24 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// nextSegment is the segment after name on the same timeline.
func nextSegment(name string) string {
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	seg++
	if seg >= segmentsPerLog {
		log, seg = log+1, 0
	}
	return fmt.Sprintf("%s%08X%08X", name[:8], log, seg)
}

// archiveGap returns the first segment missing from the WAL archive in
// dir between start and the newest archived segment of start's timeline,
// "" when the archive is contiguous. Segments before start are not
// needed and not looked at.
func archiveGap(dir, start string) (missing string, newest string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("read WAL archive %s: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if isSegmentName(n) && n[:8] == start[:8] && n >= start {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "", "", nil
	}
	newest = names[len(names)-1]
	want := start
	for _, n := range names {
		if n != want {
			return want, newest, nil
		}
		want = nextSegment(n)
	}
	return "", newest, nil
}

// lastRestoreMiss finds, in the scratch server's log, the last WAL
// segment restore_command could not fetch (our restore_command logs
// "regdr: WAL segment X not in archive").
func lastRestoreMiss(logText string) string {
	var last string
	for line := range strings.SplitSeq(logText, "\n") {
		if _, rest, ok := strings.Cut(line, "regdr: WAL segment "); ok {
			if name, _, ok := strings.Cut(rest, " "); ok && isSegmentName(name) {
				last = name
			}
		}
	}
	return last
}
