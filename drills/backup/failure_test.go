package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/registry"
)

// restoredPort is the scratch port the restore phase reported.
func restoredPort(t *testing.T, v backup.Verification) int {
	t.Helper()
	d := phase(v, backup.PhaseRestore).Detail
	i := strings.LastIndex(d, ":")
	var port int
	if i < 0 {
		t.Fatalf("restore detail %q names no port", d)
	}
	if _, err := fmt.Sscanf(d[i+1:], "%d", &port); err != nil {
		t.Fatalf("restore detail %q: %v", d, err)
	}
	return port
}

// A flipped byte in a data file of the backup is caught by the integrity
// phase, nothing is restored from it, and nothing is left behind.
func TestFlippedByteIsCaught(t *testing.T) {
	for _, typ := range []string{backup.TypeBasebackup, backup.TypePgBackRest} {
		t.Run(typ, func(t *testing.T) {
			f := newFixture(t, 200, typ == backup.TypePgBackRest)
			f.publish(2026112401, time.Now().Add(-time.Minute))
			var rel string
			if err := f.conn.QueryRow(t.Context(), `SELECT pg_relation_filepath('domains')`).Scan(&rel); err != nil {
				t.Fatal(err)
			}
			b := f.take(typ)
			file := filepath.Join(b.Path, rel)
			if typ == backup.TypePgBackRest {
				file = filepath.Join(f.pgbr.RepoPath, "backup", f.pgbr.Stanza, b.Label, "pg_data", rel+".lz4")
			}
			flipByte(t, file)
			v := f.verify(f.verifyOptions(b))
			if v.Passed() {
				t.Fatal("backup with a flipped byte passed")
			}
			if p := phase(v, backup.PhaseIntegrity); p.Status != backup.StatusFailed {
				t.Errorf("integrity phase %s, want failed", p.Status)
			}
			if p := phase(v, backup.PhaseRestore); p.Status != backup.StatusSkipped {
				t.Errorf("restore phase %s, want skipped after a failed integrity check", p.Status)
			}
			if p := phase(v, backup.PhaseTeardown); p.Status != backup.StatusPassed {
				t.Errorf("teardown: %s %s", p.Status, p.Error)
			}
		})
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := len(data) / 2
	data[i] ^= 0x40
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// switchWAL ends the current WAL segment and waits until the archiver
// has copied it.
func (f *fixture) switchWAL() string {
	f.t.Helper()
	ctx := ctxT(f.t, time.Minute)
	var seg string
	if err := f.conn.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&seg); err != nil {
		f.t.Fatal(err)
	}
	for {
		// archive_command has finished (copy and, with pgBackRest,
		// archive-push) once the archiver reports the segment.
		var last string
		if err := f.conn.QueryRow(ctx, `SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver`).Scan(&last); err != nil {
			f.t.Fatal(err)
		}
		if last >= seg {
			return seg
		}
		select {
		case <-ctx.Done():
			f.t.Fatalf("segment %s not archived", seg)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (f *fixture) register(n int, prefix string) {
	f.t.Helper()
	for i := range n {
		if _, err := registry.Register(ctxT(f.t, time.Minute), f.conn, fmt.Sprintf("%s%d", prefix, i), []string{"ns1.provider.net.", "ns2.provider.net."}); err != nil {
			f.t.Fatal(err)
		}
	}
}

// PITR from the archive reaches a later instant; with a segment removed
// from the archive it fails naming that segment, and leaves no process,
// port or directory behind.
func TestPITRAndMissingWALSegment(t *testing.T) {
	f := newFixture(t, 300, false)
	// A registry write that fails after taking its journal id leaves a
	// hole in the ids: normal, not a lost row.
	f.register(1, "dup")
	if _, err := registry.Register(t.Context(), f.conn, "dup0", []string{"ns1.provider.net."}); err == nil {
		t.Fatal("registering dup0 twice succeeded")
	}
	f.publish(2026112401, time.Now().Add(-time.Minute))
	b := f.take(backup.TypeBasebackup)

	f.register(20, "pitr")
	middle := f.switchWAL()
	f.publish(2026112402, time.Now())
	time.Sleep(20 * time.Millisecond) // the target must be strictly after the commits above
	target := time.Now()
	time.Sleep(20 * time.Millisecond)
	f.register(1, "after")
	f.switchWAL()

	o := f.verifyOptions(b)
	o.TargetTime = target
	o.RowTolerancePercent = 10 // 321 domains at the target, 301 at backup time
	v := f.verify(o)
	if !v.Passed() {
		t.Fatalf("PITR with a complete archive failed: %s", v.Failure())
	}
	if d := phase(v, backup.PhaseSemantic).Detail; !strings.Contains(d, "321 domains") || !strings.Contains(d, "(1 holes") {
		t.Errorf("semantic detail %q, want 321 domains at the target time and the one hole", d)
	}
	portFree(t, restoredPort(t, v))

	if err := os.Remove(filepath.Join(f.wal, middle)); err != nil {
		t.Fatal(err)
	}
	v = f.verify(o)
	if v.Passed() {
		t.Fatal("PITR across a missing WAL segment passed")
	}
	p := phase(v, backup.PhaseStart)
	if p.Status != backup.StatusFailed || !strings.Contains(p.Error, "WAL segment "+middle+" missing") {
		t.Errorf("start phase %s %q, want a failure naming segment %s", p.Status, p.Error, middle)
	}
	portFree(t, restoredPort(t, v))
}

// A backup of an empty registry, catalogued as holding 10,000 domains,
// fails the semantic check (RIPE 2012: the backups "existed").
func TestEmptyRegistryFailsSemanticCheck(t *testing.T) {
	f := newFixture(t, 0, false)
	f.publish(2026112401, time.Now().Add(-time.Minute))
	b := f.take(backup.TypeBasebackup)
	b.Facts.Domains, b.Facts.Delegations, b.Facts.Hosts = 10000, 10000, 10000
	b.Facts.JournalRows += 3 // the catalog saw three journal rows more than the backup holds
	if err := f.cat.Put(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	b, err := f.cat.Get(t.Context(), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	o := f.verifyOptions(b)
	o.Assertions = []configAssertion{{Name: "some-domains", SQL: "SELECT count(*) FROM domains", Expect: ">= 1"}}
	v := f.verify(o)
	if v.Passed() {
		t.Fatal("empty registry passed")
	}
	p := phase(v, backup.PhaseSemantic)
	for _, want := range []string{"domains: restored 0, catalog recorded 10000", "assertion some-domains: got 0, want >= 1", "3 rows lost"} {
		if p.Status != backup.StatusFailed || !strings.Contains(p.Error, want) {
			t.Errorf("semantic phase %s %q, want it to say %q", p.Status, p.Error, want)
		}
	}
}

// No zone version published at backup time is a failure saying so; and a
// cancelled verify still tears everything down.
func TestNoZoneVersionAndCancel(t *testing.T) {
	f := newFixture(t, 100, false)
	b := f.take(backup.TypeBasebackup)
	// Published only after the backup: nothing was published at its time.
	f.publish(2026112401, time.Now().Add(time.Hour))
	v := f.verify(f.verifyOptions(b))
	if v.Passed() {
		t.Fatal("backup without a matching zone version passed")
	}
	p := phase(v, backup.PhaseZone)
	if p.Status != backup.StatusFailed || !strings.Contains(p.Error, "no zone version of test. published as of") {
		t.Errorf("zone phase %s %q, want 'no zone version ... published'", p.Status, p.Error)
	}
	if p := phase(v, backup.PhaseSemantic); p.Status != backup.StatusPassed {
		t.Errorf("semantic phase %s %s, want passed (only the zone is missing)", p.Status, p.Error)
	}

	// Cancel while the scratch server is up.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	o := f.verifyOptions(b)
	o.Progress = func(e backup.Event) {
		if e.Phase == backup.PhaseAmcheck && !e.Done {
			cancel()
		}
	}
	v, err := backup.Verify(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if v.Passed() {
		t.Error("cancelled verify passed")
	}
	if p := phase(v, backup.PhaseTeardown); p.Status != backup.StatusPassed {
		t.Errorf("teardown after cancel: %s %s", p.Status, p.Error)
	}
	f.assertNothingLeft()
	portFree(t, restoredPort(t, v))
}
