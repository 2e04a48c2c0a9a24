// Command prof times (and optionally profiles) the check of one zone file
// in process: the parse of each file, then every gate, with the time of
// each. With -previous and -incremental the previous version is taken as
// verified, which is the agent's incremental check.
//
//	go run ./bench/zonecheck/prof -zone base.zone -cpu cpu.out -mem mem.out
//	go run ./bench/zonecheck/prof -zone next.zone -previous base.zone -incremental
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonestore"
)

func main() {
	file := flag.String("zone", "", "zone file (required)")
	origin := flag.String("origin", "test.", "zone origin")
	prev := flag.String("previous", "", "previous version (optional)")
	cpu := flag.String("cpu", "", "CPU profile output")
	mem := flag.String("mem", "", "heap profile output, taken after the check")
	ixfr := flag.String("ixfr", "", "with -previous: store both versions in a zone store in this (new) directory and time the IXFR difference between them")
	incremental := flag.Bool("incremental", false, "treat -previous as verified (gates.Input.PreviousVerified), as the agent does for its last accepted version")
	flag.Parse()
	if *file == "" {
		flag.Usage()
		os.Exit(2)
	}
	if *cpu != "" {
		f, err := os.Create(*cpu)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	z, err := zone.ParseFile(*file, *origin)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("parse %s: %d records in %s", *file, z.Len(), time.Since(start))
	in := &gates.Input{Zone: z, Now: time.Now()}
	if *prev != "" {
		t := time.Now()
		if in.Previous, err = zone.ParseFile(*prev, *origin); err != nil {
			log.Fatal(err)
		}
		in.Published = in.Previous
		in.PreviousVerified = *incremental
		log.Printf("parse %s in %s", *prev, time.Since(t))
	}
	t := time.Now()
	rep := gates.Run(context.Background(), gates.Default(gates.DefaultConfig()), in)
	log.Printf("gates in %s: pass %v", time.Since(t), rep.Pass)
	for _, r := range rep.Results {
		log.Printf("  %-10s %-5s %8s %s", r.Gate, r.Status, r.Took.Round(time.Millisecond), r.Reason)
	}
	if *ixfr != "" && in.Previous != nil {
		if err := timeDelta(*ixfr, in.Previous, z); err != nil {
			log.Fatal(err)
		}
	}
	if *mem != "" {
		f, err := os.Create(*mem)
		if err != nil {
			log.Fatal(err)
		}
		runtime.GC()
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	runtime.KeepAlive(z)
}

// timeDelta stores prev and cur as the agent does and times the IXFR
// difference between them, as zoneserve asks for it.
func timeDelta(dir string, prev, cur *zone.Zone) error {
	s, err := zonestore.Open(dir)
	if err != nil {
		return err
	}
	for i, z := range []*zone.Zone{prev, cur} {
		t := time.Now()
		if _, err := s.Put(z, zonestore.Manifest{AcceptedAt: time.Now().Add(time.Duration(i) * time.Second), AcceptedBy: "bench"}); err != nil {
			return err
		}
		log.Printf("store serial %d: %s", z.Serial, time.Since(t))
	}
	for _, what := range []string{"first", "cached"} {
		t := time.Now()
		d, err := s.Delta(context.Background(), cur.Origin, prev.Serial, cur)
		if err != nil {
			return err
		}
		log.Printf("IXFR difference %d -> %d (%s): -%d +%d records in %s", prev.Serial, cur.Serial, what, len(d.Deleted), len(d.Added), time.Since(t))
	}
	return nil
}
