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
	"fmt"
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
	apply := flag.Bool("apply", false, "with -previous: check -previous in full, then time the agent's path for the next version: the IXFR difference applied to it (zone.Apply) and the incremental check (gates.Input.PreviousPassed) with its index kept")
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
	if *apply {
		if *prev == "" {
			log.Fatal("-apply needs -previous")
		}
		if err := timeApply(*prev, *file, *origin); err != nil {
			log.Fatal(err)
		}
		return
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

// timeApply is the agent's path for a new version that arrives as a
// difference: the previous version checked in full (and kept, with its
// index), then the difference applied and the new version checked
// incrementally.
func timeApply(prevFile, nextFile, origin string) error {
	t := time.Now()
	prev, err := zone.ParseFile(prevFile, origin)
	if err != nil {
		return err
	}
	next, err := zone.ParseFile(nextFile, origin)
	if err != nil {
		return err
	}
	log.Printf("parse both versions: %s", time.Since(t))
	gs := gates.Default(gates.DefaultConfig())
	t = time.Now()
	rep, prevIx := gates.RunIndexed(context.Background(), gs, &gates.Input{Zone: prev, Now: time.Now()})
	if !rep.Pass {
		return fmt.Errorf("previous version refused: %v", rep.Failed())
	}
	log.Printf("previous version (serial %d) checked in full: %s", prev.Serial, time.Since(t))
	t = time.Now()
	del, add := zone.Diff(prev, next)
	log.Printf("difference (what IXFR carries): -%d +%d records, %s", len(del), len(add), time.Since(t))
	next = nil
	runtime.GC()

	for round := range 3 {
		start := time.Now()
		cur, err := zone.Apply(prev, del, add)
		if err != nil {
			return err
		}
		applied := time.Since(start)
		t := time.Now()
		rep, _ := gates.RunIndexed(context.Background(), gs, &gates.Input{
			Zone: cur, Previous: prev, Published: prev, Now: time.Now(),
			PreviousPassed: true, PreviousIndex: prevIx,
		})
		checked := time.Since(t)
		log.Printf("round %d: serial %d -> %d: applied in %s, checked in %s (index and every gate), total %s: pass %v",
			round, prev.Serial, cur.Serial, applied.Round(time.Millisecond), checked.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), rep.Pass)
		if round == 0 {
			for _, r := range rep.Results {
				log.Printf("  %-10s %-5s %8s %s", r.Gate, r.Status, r.Took.Round(time.Millisecond), r.Reason)
			}
		}
	}
	return nil
}
