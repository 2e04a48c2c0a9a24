package zonestore

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/regdr/regdr/replicator/zone/zonetest"
)

// bigRecords is a registry-sized zone for round-trip timing: 100,000
// records is a mid-sized ccTLD.
const bigRecords = 100_000

// TestBigRoundTrip: a 100,000-record version goes in and comes back out
// with the same digest fast enough that storing every version costs the
// publication path nothing noticeable.
func TestBigRoundTrip(t *testing.T) {
	z := zonetest.Zone(t, "test.", 2026030101, bigRecords)
	s := newStore(t)
	start := time.Now()
	m, err := s.Put(z, accepted(t0))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	put := time.Since(start)
	got, err := s.Load(m)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	took := time.Since(start)
	t.Logf("%d records: Put %s, Put+Load %s", z.Len(), put, took)
	if got.Digest != z.Digest || got.Len() != z.Len() || got.Serial != z.Serial {
		t.Errorf("round trip: %d records digest %s, want %d %s", got.Len(), got.Digest, z.Len(), z.Digest)
	}
	if m.Records != z.Len() || m.Delegations == 0 {
		t.Errorf("manifest records %d delegations %d, want %d and some", m.Records, m.Delegations, z.Len())
	}
	// Measured at about 0.4s on 2 cores (2.7s under -race); the bound leaves room for a
	// loaded CI machine and still fails if a change makes it quadratic.
	if limit := 3 * time.Second * raceSlowdown; took > limit {
		t.Errorf("Put+Load of %d records took %s, want under %s", z.Len(), took, limit)
	}
}

func BenchmarkPutLoad100k(b *testing.B) {
	z := zonetest.Zone(b, "test.", 2026030101, bigRecords)
	dir := b.TempDir()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// A fresh store each time: Put of a version already stored only
		// hashes the existing object, which is not what is measured.
		s, err := Open(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		m, err := s.Put(z, accepted(t0))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Load(m); err != nil {
			b.Fatal(err)
		}
	}
}
