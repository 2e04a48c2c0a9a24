package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/failover"
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
		// Plan and approval are people's work before the switchover;
		// the clock starts when execute does.
		phases, start, err := regdrSwitch(ctx, l, active, other)
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

// regdrSwitch moves the active site from `from` to `to` with regdr's own
// commands, as operators would: alice plans, bob approves, alice executes.
// It returns execute's steps as offsets from its start (when each step
// finished), and that start.
func regdrSwitch(ctx context.Context, l *lab.Lab, from, to string) (map[string]time.Duration, time.Time, error) {
	bin, err := filepath.Abs(regdrBin())
	if err != nil {
		return nil, time.Time{}, err
	}
	run := func(args ...string) ([]byte, error) {
		c := exec.CommandContext(ctx, bin, append(args, "--config", l.State.Config)...)
		c.Env = append(os.Environ(), "REGDR_OPERATOR=alice")
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			return out, fmt.Errorf("regdr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		return out, nil
	}
	var plan failover.Plan
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := run("failover", "plan", "--to", to, "-o", "json")
		if err == nil {
			if err := json.Unmarshal(out, &plan); err != nil {
				return nil, time.Time{}, err
			}
			break
		}
		// Right after the previous move the old primary may still be
		// rejoining: the preflight refuses until it streams.
		if time.Now().After(deadline) {
			return nil, time.Time{}, err
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := run("failover", "approve", plan.ID, "--operator", "bob", "--key", l.OperatorKey("bob")); err != nil {
		return nil, time.Time{}, err
	}
	start := time.Now()
	out, err := run("failover", "execute", plan.ID, "--operator", "alice", "--key", l.OperatorKey("alice"), "-o", "json")
	if err != nil {
		return nil, start, err
	}
	var op failover.Operation
	if err := json.Unmarshal(out, &op); err != nil {
		return nil, start, err
	}
	phases := map[string]time.Duration{}
	for _, st := range op.Steps {
		if st.Status == failover.StepDone {
			phases[st.Name] = st.Finished.Sub(op.Started)
		}
	}
	return phases, start, nil
}

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
