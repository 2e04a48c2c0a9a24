package pgctl_test

import (
	"errors"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/replicator/pgctl"
)

// TestLocalCrashAndCleanShutdown: after kill -9 there is no shutdown
// checkpoint; EnsureCleanShutdown recovers in single-user mode and keeps
// every committed row.
func TestLocalCrashAndCleanShutdown(t *testing.T) {
	t.Parallel()
	c := pglabtest.Primary(t)
	ctx := timeout(t, 60*time.Second)
	l := local(t, c)
	conn := pglabtest.Conn(t, c, "registry")
	exec(t, ctx, conn, `CREATE TABLE t (v int)`)
	exec(t, ctx, conn, `INSERT INTO t SELECT generate_series(1, 500)`)

	if !l.Running() {
		t.Fatal("Running() = false for a running server")
	}
	if _, err := l.ShutdownCheckpointLSN(ctx); !errors.Is(err, pgctl.ErrRunning) {
		t.Fatalf("ShutdownCheckpointLSN while running: %v; want ErrRunning", err)
	}
	if err := pgctl.EnsureSlot(ctx, conn, "regdr_keep"); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the postmaster to die", func() (bool, error) { return !l.Running(), nil })
	if _, err := l.ShutdownCheckpointLSN(ctx); !errors.Is(err, pgctl.ErrNotCleanShutdown) {
		t.Fatalf("ShutdownCheckpointLSN after kill -9: %v; want ErrNotCleanShutdown", err)
	}
	for range 2 { // idempotent
		if err := l.EnsureCleanShutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ckpt, err := l.ShutdownCheckpointLSN(ctx)
	if err != nil || ckpt == 0 {
		t.Fatalf("ShutdownCheckpointLSN after clean shutdown: %s, %v", ckpt, err)
	}
	if tli, err := l.Timeline(ctx); err != nil || tli != 1 {
		t.Fatalf("Timeline = %d, %v; want 1", tli, err)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn = pglabtest.Conn(t, c, "registry")
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 500 {
		t.Fatalf("rows after crash recovery: %d, %v; want 500", n, err)
	}
	pos, err := pgctl.Position(ctx, conn)
	if err != nil || pos.Role != "primary" || pos.Current <= ckpt {
		t.Fatalf("after restart: %+v, %v; want a primary past %s", pos, err, ckpt)
	}
	for _, mode := range []string{"immediate", "fast", "fast"} { // a stopped server stops again
		if err := l.Stop(ctx, mode); err != nil {
			t.Fatal(err)
		}
		if l.Running() {
			t.Fatalf("running after Stop(%s)", mode)
		}
		if mode == "immediate" {
			if err := l.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Stop(ctx, "smart"); err == nil {
		t.Fatal("Stop accepted mode smart")
	}
}
