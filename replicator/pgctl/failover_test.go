package pgctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/drills/load"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/replicator/pgctl"
)

// local is how a site's agent sees its lab cluster.
func local(t *testing.T, c *pglab.Cluster) *pgctl.Local {
	return &pgctl.Local{
		Name:     c.Name,
		DataDir:  c.DataDir,
		BinDir:   c.BinDir,
		LogFile:  c.LogFile,
		Preserve: []string{pglab.SiteConf},
		Log:      pglabtest.Logger(t),
	}
}

// conninfo is what a standby named app puts in primary_conninfo to
// stream from c.
func conninfo(c *pglab.Cluster, app string) string {
	return fmt.Sprintf("host=%s port=%d user=regdr application_name=%s sslmode=disable", c.Host, c.Port, app)
}

// writer runs the load generator, counting acknowledged writes.
type writer struct {
	acked  atomic.Int64
	path   string
	cancel context.CancelFunc
	done   chan struct{}
	stats  load.Stats
	err    error
}

func startLoad(t *testing.T, connString string) *writer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	w := &writer{path: filepath.Join(t.TempDir(), "load.jsonl"), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.stats, w.err = load.Run(ctx, load.Options{
			ConnString:  connString,
			TLD:         "test",
			Rate:        300,
			Workers:     4,
			JournalPath: w.path,
			OpTimeout:   2 * time.Second,
			OnRecord: func(r load.Record) {
				if r.Acked() {
					w.acked.Add(1)
				}
			},
		})
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// waitAcks waits until n more writes than now are acknowledged.
func (w *writer) waitAcks(t *testing.T, ctx context.Context, n int64) {
	t.Helper()
	target := w.acked.Load() + n
	waitFor(t, ctx, fmt.Sprintf("%d acknowledged writes", target), func() (bool, error) {
		return w.acked.Load() >= target, nil
	})
}

func (w *writer) stop(t *testing.T) []load.Record {
	t.Helper()
	w.cancel()
	<-w.done
	if w.err != nil {
		t.Fatalf("load: %v", w.err)
	}
	recs, err := load.ReadJournal(w.path)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func newRegistry(t *testing.T, ctx context.Context, c *pglab.Cluster) {
	t.Helper()
	conn := pglabtest.Conn(t, c, "registry")
	if err := registry.Apply(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// streamingTo reports whether primary's pg_stat_replication shows app
// streaming.
func streamingTo(ctx context.Context, primary *pgx.Conn, app string) (bool, error) {
	var n int
	err := primary.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`, app).Scan(&n)
	return n == 1, err
}

// switchover moves the primary from old to new in the order doc.go gives
// and returns each step's duration and the whole database part.
func switchover(t *testing.T, ctx context.Context, old, nw *pglab.Cluster) (map[string]time.Duration, time.Duration, pgctl.LSN) {
	t.Helper()
	oc := pglabtest.Conn(t, old, "registry")
	nc := pglabtest.Conn(t, nw, "registry")
	oldL := local(t, old)
	steps := map[string]time.Duration{}
	step := func(name string, f func() error) {
		t.Helper()
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatalf("switchover %s→%s: %s: %v", old.Name, nw.Name, name, err)
		}
		steps[name] = time.Since(t0)
	}
	begin := time.Now()
	step("fence", func() error { return pgctl.Fence(ctx, oc) })
	step("stop", func() error { return oldL.Stop(ctx, "fast") })
	var ckpt pgctl.LSN
	step("checkpoint", func() (err error) { ckpt, err = oldL.ShutdownCheckpointLSN(ctx); return err })
	step("replay", func() error { return pgctl.WaitReplayed(ctx, nc, ckpt+1) })
	step("promote", func() error { _, err := pgctl.Promote(ctx, nc); return err })
	step("unfence", func() error { return pgctl.Unfence(ctx, nc) })
	return steps, time.Since(begin), ckpt
}

func logSwitchover(t *testing.T, from, to string, steps map[string]time.Duration, total time.Duration) {
	t.Helper()
	var parts []string
	for _, s := range []string{"fence", "stop", "checkpoint", "replay", "promote", "unfence"} {
		parts = append(parts, fmt.Sprintf("%s %v", s, steps[s].Round(time.Millisecond)))
	}
	t.Logf("switchover %s→%s: database part %v (%s)", from, to, total.Round(time.Millisecond), strings.Join(parts, ", "))
}

// TestSwitchover moves the primary from tokyo to osaka and back under
// write load with zero acknowledged writes lost; after each move the old
// primary rejoins as the new one's standby.
func TestSwitchover(t *testing.T) {
	tokyo := pglabtest.Primary(t, "osaka")
	osaka := pglabtest.Standby(t, tokyo, "osaka")
	ctx := timeout(t, 120*time.Second)
	newRegistry(t, ctx, tokyo)

	both := fmt.Sprintf("host=%s,%s port=%d,%d user=regdr dbname=registry sslmode=disable target_session_attrs=read-write connect_timeout=2",
		tokyo.Host, osaka.Host, tokyo.Port, osaka.Port)
	w := startLoad(t, both)
	w.waitAcks(t, ctx, 100)

	// tokyo → osaka.
	steps, total, ckpt := switchover(t, ctx, tokyo, osaka)
	if total > 10*time.Second {
		t.Errorf("database part of the switchover took %v", total)
	}
	logSwitchover(t, "tokyo", "osaka", steps, total)
	w.waitAcks(t, ctx, 100)
	oc := pglabtest.Conn(t, osaka, "registry")
	if pos, err := pgctl.Position(ctx, oc); err != nil || pos.Role != "primary" || pos.Timeline != 2 {
		t.Fatalf("osaka after switchover: %+v, %v; want primary on timeline 2", pos, err)
	}

	// Rejoin tokyo step by step: a clean switchover leaves nothing to
	// rewind.
	oldL := local(t, tokyo)
	if err := pgctl.EnsureSlot(ctx, oc, pglab.SlotName("tokyo")); err != nil {
		t.Fatal(err)
	}
	diverged, fork, err := pgctl.Diverged(ctx, oldL, oc)
	if err != nil || diverged {
		t.Fatalf("Diverged after a clean switchover = %v at %s, %v; want false", diverged, fork, err)
	}
	if fork <= ckpt {
		t.Fatalf("fork %s is not past tokyo's shutdown checkpoint %s", fork, ckpt)
	}
	rejoin := time.Now()
	// Rewind is safe to call anyway.
	if err := oldL.Rewind(ctx, osaka.ConnString("postgres")); err != nil {
		t.Fatal(err)
	}
	// Even "no rewind required" leaves a server that starts as a standby.
	if _, err := os.Stat(filepath.Join(tokyo.DataDir, "standby.signal")); err != nil {
		t.Fatalf("after Rewind: %v", err)
	}
	if err := oldL.ConfigureStandby(conninfo(osaka, "tokyo"), pglab.SlotName("tokyo")); err != nil {
		t.Fatal(err)
	}
	if err := oldL.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tokyo.WaitStreaming(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "osaka to stream to tokyo", func() (bool, error) { return streamingTo(ctx, oc, "tokyo") })
	t.Logf("rejoin of tokyo as standby (rewind, configure, start, streaming): %v", time.Since(rejoin).Round(time.Millisecond))
	tc := pglabtest.Conn(t, tokyo, "registry")
	op, err := pgctl.Position(ctx, oc)
	if err != nil {
		t.Fatal(err)
	}
	if err := pgctl.WaitReplayed(ctx, tc, op.Current); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "tokyo to receive timeline 2", func() (bool, error) {
		pos, err := pgctl.Position(ctx, tc)
		return pos.Role == "standby" && pos.Timeline == 2, err
	})
	// tokyo still carries the fence it got as primary, until it is
	// promoted again and unfenced.
	if f, err := pgctl.IsFenced(ctx, tc); err != nil || !f {
		t.Fatalf("IsFenced(tokyo) = %v, %v; want true (fence persists)", f, err)
	}
	// The slot tokyo kept for osaka would hold WAL while tokyo is a
	// standby: drop it (switching back makes it again).
	if err := pgctl.DropSlot(ctx, tc, pglab.SlotName("osaka")); err != nil {
		t.Fatal(err)
	}
	siteConf, err := os.ReadFile(filepath.Join(tokyo.DataDir, pglab.SiteConf))
	if err != nil || !strings.Contains(string(siteConf), fmt.Sprintf("port = %d", tokyo.Port)) {
		t.Fatalf("tokyo's %s after rewind: %v\n%s", pglab.SiteConf, err, siteConf)
	}

	// osaka → tokyo, the load still running.
	steps, total, _ = switchover(t, ctx, osaka, tokyo)
	logSwitchover(t, "osaka", "tokyo", steps, total)
	w.waitAcks(t, ctx, 100)
	recs := w.stop(t)
	tc = pglabtest.Conn(t, tokyo, "registry")
	if f, err := pgctl.IsFenced(ctx, tc); err != nil || f {
		t.Fatalf("IsFenced(tokyo) after switching back = %v, %v; want false", f, err)
	}
	v, err := load.Check(ctx, tc, w.stats.Prefix, recs)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Acked < 300 {
		t.Fatalf("after two switchovers: %d acked, lost %v, unexpected %v", v.Acked, v.Lost, v.Unexpected)
	}
	t.Logf("load over both switchovers: %d acked, 0 lost, %d errors, %d uncertain (%d kept); longest write gap %v (includes the load's reconnect backoff)",
		v.Acked, w.stats.Errors, w.stats.Uncertain, len(v.UncertainKept), w.stats.LongestGap.Round(time.Millisecond))

	// osaka rejoins through Rejoin: nothing diverged, it just follows.
	if err := pgctl.EnsureSlot(ctx, tc, pglab.SlotName("osaka")); err != nil {
		t.Fatal(err)
	}
	ol := local(t, osaka)
	did, err := ol.Rejoin(ctx, tc, tokyo.ConnString("postgres"), conninfo(tokyo, "osaka"), pglab.SlotName("osaka"))
	if err != nil || did != "followed" {
		t.Fatalf("Rejoin(osaka) = %q, %v; want followed", did, err)
	}
	if err := osaka.WaitStreaming(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "tokyo to stream to osaka", func() (bool, error) { return streamingTo(ctx, tc, "osaka") })
	pos, err := pgctl.Position(ctx, tc)
	if err != nil || pos.Timeline != 3 {
		t.Fatalf("tokyo after switching back: %+v, %v; want timeline 3", pos, err)
	}
}

// TestDisasterSalvageRejoin: osaka stops receiving WAL, tokyo keeps
// acknowledging writes and then dies (kill -9); osaka is promoted and
// takes new writes (reusing journal ids); the salvage from tokyo lists
// exactly the acknowledged writes osaka lacks; tokyo is rewound and rejoins.
func TestDisasterSalvageRejoin(t *testing.T) {
	tokyo := pglabtest.Primary(t, "osaka")
	osaka := pglabtest.Standby(t, tokyo, "osaka")
	ctx := timeout(t, 90*time.Second)
	newRegistry(t, ctx, tokyo)
	oldL := local(t, tokyo)
	oc := pglabtest.Conn(t, osaka, "registry")

	w := startLoad(t, tokyo.ConnString("registry")+" connect_timeout=2")
	w.waitAcks(t, ctx, 50)
	// Cut osaka off: its WAL receiver stops, so what tokyo acknowledges
	// from now on never reaches it.
	exec(t, ctx, oc, `ALTER SYSTEM SET primary_conninfo = ''`)
	exec(t, ctx, oc, `SELECT pg_reload_conf()`)
	waitFor(t, ctx, "osaka's WAL receiver to stop", func() (bool, error) {
		var n int
		err := oc.QueryRow(ctx, `SELECT count(*) FROM pg_stat_wal_receiver`).Scan(&n)
		return n == 0, err
	})
	w.waitAcks(t, ctx, 100)
	if err := tokyo.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "tokyo's postmaster to die", func() (bool, error) { return !oldL.Running(), nil })
	recs := w.stop(t)

	tli, err := pgctl.Promote(ctx, oc)
	if err != nil || tli != 2 {
		t.Fatalf("promote osaka: timeline %d, %v", tli, err)
	}
	// New writes at osaka: its journal sequence restarts from what it
	// replayed, so it hands out ids tokyo already used.
	var newIDs []int64
	for i := range 60 {
		id, err := registry.Register(ctx, oc, fmt.Sprintf("after-%d", i), []string{"ns1.example.net."})
		if err != nil {
			t.Fatal(err)
		}
		newIDs = append(newIDs, id)
	}

	v, err := load.Check(ctx, oc, w.stats.Prefix, recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Lost) < 50 {
		t.Fatalf("only %d acknowledged writes lost; the test needs a real loss window", len(v.Lost))
	}
	if _, err := oldL.ShutdownCheckpointLSN(ctx); !errors.Is(err, pgctl.ErrNotCleanShutdown) {
		t.Fatalf("ShutdownCheckpointLSN of a killed server: %v; want ErrNotCleanShutdown", err)
	}

	// Diverged first: it also recovers the crashed server (single-user).
	diverged, fork, err := pgctl.Diverged(ctx, oldL, oc)
	if err != nil || !diverged || fork == 0 {
		t.Fatalf("Diverged after disaster = %v at %s, %v; want true", diverged, fork, err)
	}
	rows, err := oldL.Salvage(ctx, oc, pgctl.SalvageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if oldL.Running() {
		t.Fatal("tokyo left running after salvage")
	}
	got := map[int64]pgctl.JournalRow{}
	for _, r := range rows {
		got[r.ID] = r
	}
	byID := map[int64]load.Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	for _, id := range v.Lost {
		r, ok := got[id]
		if !ok {
			t.Errorf("acknowledged write %d (%s %s) lost but not salvaged", id, byID[id].Op, byID[id].Domain)
			continue
		}
		if r.Op != byID[id].Op || r.Domain == nil || *r.Domain != byID[id].Domain {
			t.Errorf("salvaged row %d is %s %v; the load acknowledged %s %s", id, r.Op, r.Domain, byID[id].Op, byID[id].Domain)
		}
	}
	extra := 0
	for _, r := range rows {
		if slices.Contains(v.Lost, r.ID) {
			continue
		}
		// Not acknowledged-and-lost: only a write whose COMMIT was in
		// flight when tokyo died may be here.
		if rec, ok := byID[r.ID]; !ok || !rec.Uncertain || r.Domain == nil || *r.Domain != rec.Domain {
			t.Errorf("salvaged row %d (%s %v) is not a lost acknowledged write (load record %+v)", r.ID, r.Op, r.Domain, rec)
		}
		extra++
	}
	reused := 0
	for _, id := range newIDs {
		if _, ok := got[id]; ok {
			reused++
		}
	}
	if reused == 0 {
		t.Fatalf("osaka reused none of tokyo's lost ids: the test does not exercise content comparison")
	}
	t.Logf("salvage: %d rows = %d acknowledged-and-lost + %d uncommitted-acks-in-flight; %d of their ids reused by osaka", len(rows), len(v.Lost), extra, reused)

	path, err := pgctl.WriteSalvageFile(filepath.Join(t.TempDir(), "salvage"), pgctl.SalvageHeader{Site: "tokyo", Table: "journal", Timeline: 1, ForkLSN: fork}, rows)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("salvage file %s: %v, %v; want mode 0600", path, fi.Mode(), err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, back, err := pgctl.ReadSalvage(f)
	if err != nil || h.Rows != len(rows) || h.Site != "tokyo" || h.ForkLSN != fork || len(back) != len(rows) {
		t.Fatalf("salvage file round trip: header %+v, %d rows, %v", h, len(back), err)
	}
	for i := range rows {
		var want bytes.Buffer
		if len(rows[i].Detail) > 0 {
			if err := json.Compact(&want, rows[i].Detail); err != nil {
				t.Fatal(err)
			}
		}
		if back[i].ID != rows[i].ID || !back[i].At.Equal(rows[i].At) || string(back[i].Detail) != want.String() || *back[i].Domain != *rows[i].Domain {
			t.Fatalf("salvage file row %d: %+v; wrote %+v", i, back[i], rows[i])
		}
	}

	if err := pgctl.EnsureSlot(ctx, oc, pglab.SlotName("tokyo")); err != nil {
		t.Fatal(err)
	}
	rejoin := time.Now()
	did, err := oldL.Rejoin(ctx, oc, osaka.ConnString("postgres"), conninfo(osaka, "tokyo"), pglab.SlotName("tokyo"))
	if err != nil || did != "rewound" {
		t.Fatalf("rejoin: %q, %v; want rewound", did, err)
	}
	if err := tokyo.WaitStreaming(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "osaka to stream to tokyo", func() (bool, error) { return streamingTo(ctx, oc, "tokyo") })
	t.Logf("rejoin after disaster (Rejoin: rewind, configure, start; then streaming): %v", time.Since(rejoin).Round(time.Millisecond))
	if did, err := oldL.Rejoin(ctx, oc, osaka.ConnString("postgres"), conninfo(osaka, "tokyo"), pglab.SlotName("tokyo")); err != nil || did != "already standby" {
		t.Fatalf("second rejoin: %q, %v; want already standby", did, err)
	}
	if _, err := oldL.Salvage(ctx, oc, pgctl.SalvageOptions{}); !errors.Is(err, pgctl.ErrRunning) {
		t.Fatalf("salvage of the running standby: %v; want ErrRunning", err)
	}
	// tokyo now has osaka's history: the reused ids hold osaka's rows.
	op, err := pgctl.Position(ctx, oc)
	if err != nil {
		t.Fatal(err)
	}
	tc := pglabtest.Conn(t, tokyo, "registry")
	if err := pgctl.WaitReplayed(ctx, tc, op.Current); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tc.QueryRow(ctx, `SELECT count(*) FROM journal WHERE domain LIKE 'after-%'`).Scan(&n); err != nil || n != len(newIDs) {
		t.Fatalf("tokyo has %d of osaka's %d new rows (%v)", n, len(newIDs), err)
	}
}
