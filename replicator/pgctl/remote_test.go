package pgctl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/replicator/pgctl"
)

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func exec(t *testing.T, ctx context.Context, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func sqlState(err error) string {
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) {
		return pgErr.SQLState()
	}
	return ""
}

func TestFence(t *testing.T) {
	t.Parallel()
	primary := pglabtest.Primary(t, "osaka")
	standby := pglabtest.Standby(t, primary, "osaka")
	ctx := timeout(t, 60*time.Second)
	ctl := pglabtest.Conn(t, primary, "registry")
	exec(t, ctx, ctl, `CREATE TABLE t (v int)`)
	existing := pglabtest.Conn(t, primary, "registry")
	exec(t, ctx, existing, `INSERT INTO t VALUES (1)`)

	if f, err := pgctl.IsFenced(ctx, ctl); err != nil || f {
		t.Fatalf("IsFenced before fencing = %v, %v; want false", f, err)
	}
	for i := range 2 { // idempotent
		if err := pgctl.Fence(ctx, ctl); err != nil {
			t.Fatalf("fence #%d: %v", i+1, err)
		}
	}
	if f, err := pgctl.IsFenced(ctx, ctl); err != nil || !f {
		t.Fatalf("IsFenced after fencing = %v, %v; want true", f, err)
	}

	// The session that was open before the fence was terminated.
	if _, err := existing.Exec(ctx, `INSERT INTO t VALUES (2)`); err == nil {
		t.Fatal("a session opened before the fence could still write")
	}
	// A new session is refused with read_only_sql_transaction.
	fresh := pglabtest.Conn(t, primary, "registry")
	_, err := fresh.Exec(ctx, `INSERT INTO t VALUES (3)`)
	if sqlState(err) != "25006" {
		t.Fatalf("write from a new session after fence: %v; want SQLSTATE 25006", err)
	}
	// Reads still work, and the standby still streams (walsenders are
	// not terminated).
	var n int
	if err := fresh.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("read after fence: %d rows, %v; want 1", n, err)
	}
	if err := standby.WaitStreaming(ctx); err != nil {
		t.Fatalf("standby after fence: %v", err)
	}
	var streaming int
	if err := ctl.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE application_name = 'osaka' AND state = 'streaming'`).Scan(&streaming); err != nil || streaming != 1 {
		t.Fatalf("pg_stat_replication after fence: %d streaming osaka, %v", streaming, err)
	}
	// The documented limit: a session may make its own transaction
	// read-write.
	tx, err := fresh.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, ctx, tx.Conn(), `SET TRANSACTION READ WRITE`)
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (4)`); err != nil {
		t.Fatalf("documented limit no longer holds (SET TRANSACTION READ WRITE refused: %v); update Fence's doc", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The fence survives a restart.
	if err := primary.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if err := primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ctl = pglabtest.Conn(t, primary, "registry")
	after := pglabtest.Conn(t, primary, "registry")
	if _, err := after.Exec(ctx, `INSERT INTO t VALUES (5)`); sqlState(err) != "25006" {
		t.Fatalf("write after restart of a fenced server: %v; want SQLSTATE 25006", err)
	}

	for i := range 2 {
		if err := pgctl.Unfence(ctx, ctl); err != nil {
			t.Fatalf("unfence #%d: %v", i+1, err)
		}
	}
	if f, err := pgctl.IsFenced(ctx, ctl); err != nil || f {
		t.Fatalf("IsFenced after unfencing = %v, %v; want false", f, err)
	}
	unfenced := pglabtest.Conn(t, primary, "registry")
	exec(t, ctx, unfenced, `INSERT INTO t VALUES (6)`)
}

func TestPositionWaitPromoteSlots(t *testing.T) {
	t.Parallel()
	primary := pglabtest.Primary(t, "osaka")
	standby := pglabtest.Standby(t, primary, "osaka")
	ctx := timeout(t, 60*time.Second)
	pc := pglabtest.Conn(t, primary, "registry")
	sc := pglabtest.Conn(t, standby, "registry")
	exec(t, ctx, pc, `CREATE TABLE t (v int)`)
	exec(t, ctx, pc, `INSERT INTO t SELECT generate_series(1, 1000)`)

	pp, err := pgctl.Position(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	if pp.Role != "primary" || pp.Timeline != 1 || pp.Flush == 0 || pp.Current < pp.Flush {
		t.Fatalf("primary position %+v; want primary on timeline 1 with current >= flush > 0", pp)
	}
	if err := pgctl.WaitReplayed(ctx, sc, pp.Flush); err != nil {
		t.Fatal(err)
	}
	sp, err := pgctl.Position(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Role != "standby" || sp.Timeline != 1 || sp.Replay < pp.Flush || sp.Receive < sp.Replay || sp.ReplayPause != "not paused" {
		t.Fatalf("standby position %+v after WaitReplayed(%s)", sp, pp.Flush)
	}

	// Paused replay: the wait ends at its deadline and says why.
	exec(t, ctx, sc, `SELECT pg_wal_replay_pause()`)
	exec(t, ctx, pc, `INSERT INTO t SELECT generate_series(1, 1000)`)
	pp, err = pgctl.Position(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = pgctl.WaitReplayed(short, sc, pp.Flush)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReplayed with replay paused: %v; want deadline exceeded", err)
	}
	t.Logf("paused wait: %v", err)
	exec(t, ctx, sc, `SELECT pg_wal_replay_resume()`)
	if err := pgctl.WaitReplayed(ctx, sc, pp.Flush); err != nil {
		t.Fatal(err)
	}

	// Slots: ensure is idempotent; an active slot is not dropped.
	for range 2 {
		if err := pgctl.EnsureSlot(ctx, pc, "regdr_extra"); err != nil {
			t.Fatal(err)
		}
	}
	var reserved bool
	if err := pc.QueryRow(ctx, `SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'regdr_extra'`).Scan(&reserved); err != nil || !reserved {
		t.Fatalf("new slot reserves WAL: %v, %v; want true", reserved, err)
	}
	for range 2 {
		if err := pgctl.DropSlot(ctx, pc, "regdr_extra"); err != nil {
			t.Fatal(err)
		}
	}
	if err := pgctl.DropSlot(ctx, pc, pglab.SlotName("osaka")); !errors.Is(err, pgctl.ErrSlotActive) {
		t.Fatalf("drop active slot: %v; want ErrSlotActive", err)
	}

	// Promote, twice: the second call finds a primary.
	for i := range 2 {
		tli, err := pgctl.Promote(ctx, sc)
		if err != nil || tli != 2 {
			t.Fatalf("promote #%d: timeline %d, %v; want 2", i+1, tli, err)
		}
	}
	sp, err = pgctl.Position(ctx, sc)
	if err != nil || sp.Role != "primary" || sp.Timeline != 2 {
		t.Fatalf("after promotion: %+v, %v; want primary on timeline 2", sp, err)
	}
	// WaitReplayed still answers on the promoted server (resume).
	if err := pgctl.WaitReplayed(ctx, sc, pp.Flush); err != nil {
		t.Fatalf("WaitReplayed after promotion: %v", err)
	}
	if err := pgctl.WaitReplayed(ctx, pc, pp.Flush); !errors.Is(err, pgctl.ErrNotStandby) {
		t.Fatalf("WaitReplayed on a server that never was a standby: %v; want ErrNotStandby", err)
	}
}
