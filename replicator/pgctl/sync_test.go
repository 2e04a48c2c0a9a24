package pgctl_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/replicator/pgctl"
)

// waitFor polls cond every 10 ms until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
	t.Helper()
	var lastErr error
	for {
		ok, err := cond()
		if ok && err == nil {
			return
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), lastErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func syncState(ctx context.Context, c *pgx.Conn, app string) (string, error) {
	var s string
	err := c.QueryRow(ctx, `SELECT coalesce((SELECT sync_state FROM pg_stat_replication WHERE application_name = $1), 'gone')`, app).Scan(&s)
	return s, err
}

func TestSynchronousAndDegrade(t *testing.T) {
	t.Parallel()
	primary := pglabtest.Primary(t, "osaka")
	standby := pglabtest.Standby(t, primary, "osaka")
	ctx := timeout(t, 60*time.Second)
	pc := pglabtest.Conn(t, primary, "registry")
	exec(t, ctx, pc, `CREATE TABLE t (v int)`)

	if err := pgctl.SetSynchronous(ctx, pc, []string{"osaka"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "osaka synchronous", func() (bool, error) {
		s, err := syncState(ctx, pc, "osaka")
		return s == "sync", err
	})
	exec(t, ctx, pc, `INSERT INTO t VALUES (1)`)

	// Standby gone: a commit waits for it.
	if err := standby.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	writer := pglabtest.Conn(t, primary, "registry")
	var writerPid uint32 = writer.PgConn().PID()
	done := make(chan error, 1)
	go func() {
		_, err := writer.Exec(ctx, `INSERT INTO t VALUES (2)`)
		done <- err
	}()
	waitFor(t, ctx, "the commit to wait for the synchronous standby", func() (bool, error) {
		var ev *string
		err := pc.QueryRow(ctx, `SELECT wait_event FROM pg_stat_activity WHERE pid = $1`, writerPid).Scan(&ev)
		return ev != nil && *ev == "SyncRep", err
	})

	const after = 300 * time.Millisecond
	d := &pgctl.Degrader{Want: []string{"osaka"}, After: after}
	first := time.Now()
	var dec pgctl.SyncDecision
	waitFor(t, ctx, "degrade", func() (bool, error) {
		var err error
		dec, err = d.Check(ctx, pc)
		return dec.Action == pgctl.SyncDegrade, err
	})
	if waited := time.Since(first); waited < after {
		t.Fatalf("degraded after %v; rule says not before %v", waited, after)
	}
	t.Logf("degrade: %s", dec.Reason)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiting commit after degrade: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the waiting commit was not released by the degrade")
	}
	if dec, err := d.Check(ctx, pc); err != nil || dec.Action != pgctl.SyncKeep || dec.Setting != "" {
		t.Fatalf("check while degraded: %+v, %v; want no action with the setting empty", dec, err)
	}

	// Standby back: restore.
	if err := standby.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby.WaitStreaming(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "restore", func() (bool, error) {
		dec, err := d.Check(ctx, pc)
		return dec.Action == pgctl.SyncRestore, err
	})
	waitFor(t, ctx, "osaka synchronous again", func() (bool, error) {
		s, err := syncState(ctx, pc, "osaka")
		return s == "sync", err
	})

	// Off.
	if err := pgctl.SetSynchronous(ctx, pc, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "osaka asynchronous", func() (bool, error) {
		s, err := syncState(ctx, pc, "osaka")
		return s == "async", err
	})
}
