package load_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/load"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/registry"
)

func newRegistry(t *testing.T) *pglab.Cluster {
	t.Helper()
	c := pglabtest.Primary(t)
	conn := pglabtest.Conn(t, c, "registry")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := registry.Apply(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// Some bulk data the load must leave alone.
	if err := registry.Populate(ctx, conn, "test", 100); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunRecordsExactlyTheAcknowledgedWrites(t *testing.T) {
	c := newRegistry(t)
	path := filepath.Join(t.TempDir(), "load.jsonl")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	st, err := load.Run(ctx, load.Options{
		ConnString:  c.ConnString("registry"),
		TLD:         "test",
		Rate:        200,
		JournalPath: path,
		Seed:        1,
		Logger:      pglabtest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for 1 s; a busy machine may fall short, never over.
	if st.Acked < 100 || st.Acked > 202 {
		t.Fatalf("acked %d writes in 1 s at 200/s", st.Acked)
	}
	if st.Errors != 0 {
		t.Fatalf("%d errors against a healthy primary", st.Errors)
	}
	for _, op := range []string{load.OpRegister, load.OpUpdate, load.OpDelete} {
		if st.ByOp[op] == 0 {
			t.Errorf("no %s in the mix: %v", op, st.ByOp)
		}
	}

	recs, err := load.ReadJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(recs)) != st.Acked {
		t.Fatalf("journal file has %d records, stats say %d acked", len(recs), st.Acked)
	}
	conn := pglabtest.Conn(t, c, "registry")
	vctx, vcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer vcancel()
	// Each acknowledged id is in the registry journal with its op and domain.
	for _, r := range recs {
		var op, domain string
		if err := conn.QueryRow(vctx, `SELECT op, domain FROM journal WHERE id = $1`, r.ID).Scan(&op, &domain); err != nil {
			t.Fatalf("acked journal id %d: %v", r.ID, err)
		}
		if op != r.Op || domain != r.Domain {
			t.Fatalf("journal id %d is %s %s, load recorded %s %s", r.ID, op, domain, r.Op, r.Domain)
		}
	}
	v, err := load.Check(vctx, conn, st.Prefix, recs)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Acked != len(recs) || v.Present != len(recs) {
		t.Fatalf("verdict %+v", v)
	}
	// The bulk-loaded registry is untouched.
	var bulk int64
	if err := conn.QueryRow(vctx, `SELECT count(*) FROM domains WHERE name !~ '-'`).Scan(&bulk); err != nil || bulk != 100 {
		t.Fatalf("bulk domains = %d, %v; want 100", bulk, err)
	}
	// A write the load never made is caught as unexpected.
	if _, err := registry.Register(vctx, conn, st.Prefix+"-999999", []string{"ns1.example.net."}); err != nil {
		t.Fatal(err)
	}
	if v, err := load.Check(vctx, conn, st.Prefix, recs); err != nil || len(v.Unexpected) != 1 {
		t.Fatalf("after a foreign write: %+v, %v; want one unexpected", v, err)
	}
	// And an acknowledged write that is not in the database is lost.
	fake := append(recs, load.Record{ID: 1 << 40, Op: load.OpRegister, Domain: st.Prefix + "-0", At: time.Now()})
	if v, err := load.Check(vctx, conn, st.Prefix, fake); err != nil || len(v.Lost) != 1 || v.Lost[0] != 1<<40 {
		t.Fatalf("with a fake ack: %+v, %v; want it lost", v, err)
	}
}

func TestRunSurvivesPrimaryRestart(t *testing.T) {
	c := newRegistry(t)
	path := filepath.Join(t.TempDir(), "load.jsonl")
	var acked, errs atomic.Int64
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	type result struct {
		st  load.Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := load.Run(ctx, load.Options{
			ConnString:  c.ConnString("registry") + " connect_timeout=2",
			TLD:         "test",
			Rate:        100,
			JournalPath: path,
			Seed:        2,
			OpTimeout:   2 * time.Second,
			Logger:      pglabtest.Logger(t),
			OnRecord: func(r load.Record) {
				if r.Acked() {
					acked.Add(1)
				}
			},
			OnError: func(string, string, error) { errs.Add(1) },
		})
		done <- result{st, err}
	}()

	waitFor(t, 10*time.Second, "20 acks before the stop", func() bool { return acked.Load() >= 20 })
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "errors while the primary is down", func() bool { return errs.Load() >= 3 })
	ackedWhileDown := acked.Load()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "20 acks after the restart", func() bool { return acked.Load() >= ackedWhileDown+20 })
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	st := res.st
	if st.Errors < 3 || st.Acked != acked.Load() {
		t.Fatalf("stats %+v; want errors >= 3 and %d acked", st, acked.Load())
	}
	if st.Reconnects == 0 {
		t.Fatalf("no reconnects counted: %+v", st)
	}
	if st.LongestGap < 20*time.Millisecond {
		t.Fatalf("longest gap %v does not show the outage", st.LongestGap)
	}
	j, err := load.ReadJournalFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if j.TornTail != "" {
		t.Fatalf("clean stop left a torn tail %q", j.TornTail)
	}
	conn := pglabtest.Conn(t, c, "registry")
	vctx, vcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer vcancel()
	v, err := load.Check(vctx, conn, st.Prefix, j.Records)
	if err != nil {
		t.Fatal(err)
	}
	// A fast shutdown checkpoints: nothing acknowledged may be lost,
	// and every row in the database was acknowledged or uncertain.
	if !v.OK() || int64(v.Acked) != st.Acked {
		t.Fatalf("verdict %+v after restart (stats %+v)", v, st)
	}
	t.Logf("acked %d, errors %d (uncertain %d), reconnects %d, longest gap %v",
		st.Acked, st.Errors, st.Uncertain, st.Reconnects, st.LongestGap)
}
