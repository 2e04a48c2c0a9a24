// Command switchover times planned switchovers of a two-node PostgreSQL
// 15 pair under a continuous write load, for regdr and for Patroni, the
// same way, so the figures can stand side by side (issue 4, "Speed").
//
//	go run ./bench/switchover -system patroni -n 10
//	go run ./bench/switchover -system regdr -n 10   (wired by the lead)
//
// Everything runs on loopback under a temporary directory (or -dir) and is
// stopped when the command ends, also on Ctrl-C. Must run as root (the
// PostgreSQL servers run as the postgres user) or as the postgres user.
//
// Per switchover it reports:
//   - command: the switchover request until it returned success;
//   - write gap: the last write acknowledged by the old primary to the
//     first acknowledged by the new one (from the load's journal, one
//     INSERT ... RETURNING at a time at -rate per second: the gap is
//     measured to within 1/rate);
//   - first write: command start until the new primary acknowledged a
//     write;
//   - healthy: command start until the old primary streams from the new
//     one again (the pair can take the next switchover);
//   - per-phase times, where the tool's logs show them.
//
// At the end every acknowledged write is looked up on the final primary:
// a lost acknowledged write fails the run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	System     string
	N          int
	Rate       int
	Dir        string
	Keep       bool
	Settle     time.Duration
	Verbose    bool
	Patronictl bool
	LoopWait   int
	TTL        int
	Retry      int
	Lab        string
}

// sample is one timed switchover.
type sample struct {
	From, To   string
	Command    time.Duration
	WriteGap   time.Duration
	FirstWrite time.Duration
	Healthy    time.Duration
	// Phases are offsets from the command's start, by phase name.
	Phases map[string]time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.System, "system", "patroni", "what to switch over: patroni or regdr")
	flag.IntVar(&o.N, "n", 10, "switchovers (alternating direction)")
	flag.IntVar(&o.Rate, "rate", 200, "writes per second of the load (the write gap's resolution is 1/rate)")
	flag.StringVar(&o.Dir, "dir", "", "working directory (default: a new temporary one, removed at the end)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the working directory (logs) at the end")
	flag.DurationVar(&o.Settle, "settle", 2*time.Second, "pause after the pair is healthy before the next switchover")
	flag.BoolVar(&o.Verbose, "v", false, "print every switchover's merged log timeline")
	flag.BoolVar(&o.Patronictl, "patronictl", false, "patroni: switch with `patronictl switchover --force` instead of POST /switchover")
	flag.IntVar(&o.LoopWait, "loop-wait", 1, "patroni: loop_wait seconds (Patroni's default is 10)")
	flag.IntVar(&o.TTL, "ttl", 10, "patroni: leader key ttl seconds (default 30)")
	flag.IntVar(&o.Retry, "retry-timeout", 4, "patroni: retry_timeout seconds (default 10)")
	flag.StringVar(&o.Lab, "lab", "", "regdr: a running lab directory to use instead of starting one")
	flag.Parse()
	if o.N < 1 || o.Rate < 1 || o.Rate > 2000 {
		fmt.Fprintln(os.Stderr, "switchover: -n must be >= 1 and -rate 1..2000")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(o, log); err != nil {
		fmt.Fprintln(os.Stderr, "switchover:", err)
		os.Exit(1)
	}
}

func run(o options, log *slog.Logger) error {
	// Ctrl-C or SIGTERM cancel ctx; every deferred cleanup then runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "regdr-bench-switchover-")
		if err != nil {
			return err
		}
		o.Dir = d
		if !o.Keep {
			defer os.RemoveAll(d)
		}
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	// The postgres user must reach its directories below it.
	if err := os.Chmod(o.Dir, 0o755); err != nil {
		return err
	}
	log.Info("working directory", "dir", o.Dir)
	var samples []sample
	var err error
	switch o.System {
	case "patroni":
		samples, err = runPatroni(ctx, o, log)
	case "regdr":
		samples, err = runRegdr(ctx, o, log)
	default:
		return fmt.Errorf("-system %q: want patroni or regdr", o.System)
	}
	if len(samples) > 0 {
		report(os.Stdout, o, samples)
	}
	return err
}

func report(w io.Writer, o options, samples []sample) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "#\tfrom\tto\tcommand\twrite gap\tfirst write\thealthy\t\n")
	for i, s := range samples {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", i+1, s.From, s.To, ms(s.Command), ms(s.WriteGap), ms(s.FirstWrite), ms(s.Healthy))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s, %d switchovers, load %d writes/s:\n", o.System, len(samples), o.Rate)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tmedian\tmin\tmax\t\n")
	row := func(name string, get func(sample) (time.Duration, bool)) {
		var v []time.Duration
		for _, s := range samples {
			if d, ok := get(s); ok {
				v = append(v, d)
			}
		}
		if len(v) == 0 {
			return
		}
		slices.Sort(v)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, ms(median(v)), ms(v[0]), ms(v[len(v)-1]))
	}
	row("command", func(s sample) (time.Duration, bool) { return s.Command, true })
	row("write gap", func(s sample) (time.Duration, bool) { return s.WriteGap, true })
	row("first write", func(s sample) (time.Duration, bool) { return s.FirstWrite, true })
	row("healthy", func(s sample) (time.Duration, bool) { return s.Healthy, true })
	var phases []string
	seen := map[string]bool{}
	for _, s := range samples {
		for p := range s.Phases {
			if !seen[p] {
				seen[p] = true
				phases = append(phases, p)
			}
		}
	}
	// Phases in the order they happen (by median offset).
	sort.SliceStable(phases, func(i, j int) bool {
		return medianPhase(samples, phases[i]) < medianPhase(samples, phases[j])
	})
	for _, p := range phases {
		row("  "+p, func(s sample) (time.Duration, bool) { d, ok := s.Phases[p]; return d, ok })
	}
	tw.Flush()
}

func medianPhase(samples []sample, p string) time.Duration {
	var v []time.Duration
	for _, s := range samples {
		if d, ok := s.Phases[p]; ok {
			v = append(v, d)
		}
	}
	slices.Sort(v)
	return median(v)
}

// median of sorted v (the mean of the middle two for an even count).
func median(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
