package backup_test

import (
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/backup"
)

func TestVerifyGoodBasebackup(t *testing.T) {
	f := newFixture(t, 500, false)
	f.publish(2026112401, time.Now().Add(-time.Minute))
	b := f.take(backup.TypeBasebackup)
	if b.Facts.Domains != 500 || b.ManifestSHA256 == "" || b.StartLSN == "" || b.EndLSN == "" || b.StartWAL == "" || b.Size == 0 {
		t.Fatalf("catalog record incomplete: %+v", b)
	}
	got, err := f.cat.Resolve(t.Context(), "latest")
	if err != nil || got.ID != b.ID {
		t.Fatalf("latest = %+v, %v; want %s", got, err, b.ID)
	}
	v := f.verify(f.verifyOptions(b))
	if !v.Passed() {
		t.Fatalf("good backup failed: %s", v.Failure())
	}
	for _, name := range []string{backup.PhaseIntegrity, backup.PhaseRestore, backup.PhaseStart, backup.PhaseAmcheck, backup.PhaseSemantic, backup.PhaseZone, backup.PhaseTeardown} {
		if p := phase(v, name); p.Status != backup.StatusPassed {
			t.Errorf("phase %s: %s %s", name, p.Status, p.Error)
		}
	}
	if p := phase(v, backup.PhaseZone); !strings.Contains(p.Detail, "500 delegations match") {
		t.Errorf("zone phase detail %q, want 500 delegations matched", p.Detail)
	}
	// Without a key-bundle check the keys phase is unknown, never passed.
	if p := phase(v, backup.PhaseKeys); p.Status != backup.StatusUnknown {
		t.Errorf("keys phase %s, want unknown", p.Status)
	}
	if err := f.cat.Record(t.Context(), v); err != nil {
		t.Fatal(err)
	}
	vs, err := f.cat.Verifications(t.Context())
	if err != nil || len(vs) != 1 || vs[0].BackupID != b.ID || vs[0].Result != backup.StatusPassed {
		t.Fatalf("recorded verifications = %+v, %v", vs, err)
	}
}

func TestVerifyGoodPgBackRest(t *testing.T) {
	f := newFixture(t, 500, true)
	f.publish(2026112401, time.Now().Add(-time.Minute))
	b := f.take(backup.TypePgBackRest)
	if b.Label == "" || b.ManifestSHA256 == "" || b.Facts.Domains != 500 {
		t.Fatalf("catalog record incomplete: %+v", b)
	}
	v := f.verify(f.verifyOptions(b))
	if !v.Passed() {
		t.Fatalf("good pgBackRest backup failed: %s", v.Failure())
	}
	if p := phase(v, backup.PhaseZone); p.Status != backup.StatusPassed || !strings.Contains(p.Detail, "500 delegations match") {
		t.Errorf("zone phase: %+v", p)
	}

	// PITR through pgBackRest's own archive (archive-get).
	f.register(10, "later")
	f.switchWAL()
	f.publish(2026112402, time.Now())
	time.Sleep(20 * time.Millisecond)
	o := f.verifyOptions(b)
	o.TargetTime = time.Now()
	o.RowTolerancePercent = 5
	time.Sleep(20 * time.Millisecond)
	f.register(1, "after")
	f.switchWAL()
	v = f.verify(o)
	if !v.Passed() {
		t.Fatalf("pgBackRest PITR failed: %s", v.Failure())
	}
	if p := phase(v, backup.PhaseZone); !strings.Contains(p.Detail, "510 delegations match") {
		t.Errorf("zone phase after PITR: %+v, want 510 delegations", p)
	}
}
