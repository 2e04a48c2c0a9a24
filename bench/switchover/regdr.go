package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/lab"
)

// runRegdr times regdr switchovers in the regdr lab the same way runPatroni
// times Patroni's: the same loader (one INSERT ... RETURNING at a time
// against whichever site accepts writes), the same write gap, first-write
// and healthy measures, the same final check that no acknowledged write
// was lost. Only the switch itself (regdrSwitch) and its phases differ.
func runRegdr(ctx context.Context, o options, log *slog.Logger) (res []sample, err error) {
	var l *lab.Lab
	if o.Lab != "" {
		if l, err = lab.Open(o.Lab); err != nil {
			return nil, err
		}
	} else {
		bin, err := filepath.Abs(regdrBin())
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("regdr binary: %w (run `make build`, or set REGDR_BIN)", err)
		}
		upCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		l, err = lab.Up(upCtx, lab.Options{Dir: filepath.Join(o.Dir, "lab"), Domains: 2000, Bin: bin, Logger: log, Progress: os.Stderr})
		cancel()
		if err != nil {
			return nil, err
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if derr := l.Down(dctx); derr != nil {
				log.Error("lab down", "err", derr)
			}
		}()
	}
	port := map[string]int{}
	for _, p := range l.State.Postgres {
		port[p.Site] = p.Port
	}

	conn, err := pgx.Connect(ctx, l.PrimaryConnString())
	if err != nil {
		return nil, err
	}
	_, err = conn.Exec(ctx, journalDDL)
	conn.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("create the load table: %w", err)
	}
	ld := &loader{connString: l.PrimaryConnString(), interval: time.Second / time.Duration(o.Rate), log: log}
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { ld.run(lctx); close(loadDone) }()
	defer func() { stopLoad(); <-loadDone }()
	active := l.State.Active
	other := "osaka"
	if active == "osaka" {
		other = "tokyo"
	}
	if _, err := ld.waitAckOn(ctx, port[active], time.Now()); err != nil {
		return nil, err
	}
	time.Sleep(o.Settle)

	for i := range o.N {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		s := sample{From: active, To: other}
		start := time.Now()
		phases, err := regdrSwitch(ctx, l, active, other)
		if err != nil {
			return res, fmt.Errorf("switchover %d (%s to %s): %w", i+1, active, other, err)
		}
		s.Command = time.Since(start)
		s.Phases = phases
		first, err := ld.waitAckOn(ctx, port[other], start)
		if err != nil {
			return res, fmt.Errorf("switchover %d: %w", i+1, err)
		}
		s.FirstWrite = first.At.Sub(start)
		if err := waitFor(ctx, 120*time.Second, active+" to stream from "+other, func() bool {
			return streamingAny(ctx, l.SiteConnString(other))
		}); err != nil {
			return res, fmt.Errorf("switchover %d: %w", i+1, err)
		}
		s.Healthy = time.Since(start)
		lastOld, firstNew, err := writeGap(ld.snapshot(), start, port[active], port[other])
		if err != nil {
			return res, fmt.Errorf("switchover %d: %w", i+1, err)
		}
		s.WriteGap = firstNew.At.Sub(lastOld.At)
		res = append(res, s)
		log.Info("switchover", "n", i+1, "from", s.From, "to", s.To, "command", s.Command, "gap", s.WriteGap, "healthy", s.Healthy)
		active, other = other, active
		time.Sleep(o.Settle)
	}
	stopLoad()
	<-loadDone
	acks := ld.snapshot()
	conn, err = pgx.Connect(ctx, l.PrimaryConnString())
	if err != nil {
		return res, err
	}
	defer conn.Close(context.Background())
	lost, err := missing(ctx, conn, acks)
	if err != nil {
		return res, err
	}
	fmt.Printf("acknowledged writes: %d, on the final primary: %d, lost: %d, failed attempts: %d\n",
		len(acks), len(acks)-len(lost), len(lost), ld.errors)
	if len(lost) > 0 {
		return res, fmt.Errorf("%d acknowledged writes lost (first ids %v)", len(lost), lost[:min(10, len(lost))])
	}
	return res, nil
}

// ---------------------------------------------------------------------
// regdr switchover: filled in by the lead.
//
// regdrSwitch must move the active site from `from` to `to` with regdr's
// own commands, as an operator would, and return when `regdr failover
// execute` has reported success, e.g.:
//
//	regdr failover plan --to <to> --mode switchover -o json   -> plan id
//	regdr failover approve <plan>   (second operator's key; lab operators)
//	regdr failover execute <plan> -o json                     -> per-step timings
//
// run with labtest-style env (REGDR_CONFIG=l.State.Config) and the lab's
// operator keys. Return the execute report's per-step timings as phases
// (offsets from the start of execute: "freeze", "fence", "wait replay",
// "promote", "epoch", "publish", "verify", ...) so the report prints them
// like Patroni's. The approval is not part of the timed switchover in the
// issue's sense; time only execute if plan/approve run first (then move
// `start` in runRegdr below them).
// ---------------------------------------------------------------------
func regdrSwitch(ctx context.Context, l *lab.Lab, from, to string) (map[string]time.Duration, error) {
	return nil, fmt.Errorf("regdr switchover: filled in by the lead (bench/switchover/regdr.go regdrSwitch): %w", errNotImplemented)
}

// errNotImplemented marks the regdr side as not wired yet.
var errNotImplemented = errors.New("not implemented")

func regdrBin() string {
	if b := os.Getenv("REGDR_BIN"); b != "" {
		return b
	}
	return "bin/regdr"
}

// streamingAny reports whether the server at connString (the new primary)
// has a standby streaming from it.
func streamingAny(ctx context.Context, connString string) bool {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(c, connString)
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	var ok bool
	err = conn.QueryRow(c, `SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming')`).Scan(&ok)
	return err == nil && ok
}
