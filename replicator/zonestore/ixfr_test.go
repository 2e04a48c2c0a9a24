package zonestore

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zone/zonetest"
)

// applyDelta is what a secondary does with an IXFR: old minus Deleted
// plus Added, with the new SOA.
func applyDelta(t *testing.T, old *zone.Zone, d *Delta) *zone.Zone {
	t.Helper()
	gone := map[string]bool{}
	for _, rr := range d.Deleted {
		gone[zone.CanonicalText(rr)] = true
	}
	if zone.CanonicalText(d.FromSOA) != zone.CanonicalText(old.RR(0)) {
		t.Fatalf("delta starts from SOA %v, the old version has %v", d.FromSOA, old.RR(0))
	}
	rrs := []dns.RR{d.ToSOA}
	for i, rr := range old.All() {
		if i == 0 {
			continue // the SOA, replaced by ToSOA
		}
		if gone[zone.CanonicalText(rr)] {
			delete(gone, zone.CanonicalText(rr))
			continue
		}
		rrs = append(rrs, rr)
	}
	if len(gone) > 0 {
		t.Fatalf("delta deletes %d records the old version does not have", len(gone))
	}
	z, err := zone.FromRecords(old.Origin, append(rrs, d.Added...))
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// edited is v with one delegation's NS changed and one DS dropped, so a
// delta holds deletions as well as additions.
func edited(t *testing.T, serial uint32, n int) *zone.Zone {
	t.Helper()
	rrs := zonetest.Records("test.", serial, n)
	var out []dns.RR
	for _, rr := range rrs {
		switch {
		case rr.Header().Name == "d000003.test." && rr.Header().Rrtype == dns.TypeDS:
			continue
		case rr.Header().Name == "d000001.test." && rr.Header().Rrtype == dns.TypeNS:
			if ns := rr.(*dns.NS); ns.Ns == "ns.example-dns.net." {
				c := *ns
				c.Ns = "ns.other-dns.net."
				rr = &c
			}
		}
		out = append(out, rr)
	}
	z, err := zone.FromRecords("test.", out)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestDelta(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	v100 := zonetest.Zone(t, "test.", 100, 2000)
	v101 := edited(t, 101, 2030)
	v102 := zonetest.Zone(t, "test.", 102, 10) // nearly everything removed
	for i, z := range []*zone.Zone{v100, v101, v102} {
		mustPut(t, s, z, accepted(t0.Add(time.Duration(i)*time.Hour)))
	}

	d, err := s.Delta(ctx, "TEST", 100, v101)
	if err != nil {
		t.Fatalf("Delta 100 -> 101: %v", err)
	}
	if d.FromSOA.Serial != 100 || d.ToSOA.Serial != 101 {
		t.Errorf("SOAs %d -> %d, want 100 -> 101", d.FromSOA.Serial, d.ToSOA.Serial)
	}
	// The package Diff on parsed zones is the reference.
	want := Diff(v100, v101)
	if len(d.Deleted) != len(want.Removed)-1 || len(d.Added) != len(want.Added)-1 {
		t.Errorf("delta -%d +%d, Diff says -%d +%d (SOAs included)", len(d.Deleted), len(d.Added), len(want.Removed), len(want.Added))
	}
	if len(d.Deleted) < 3 || len(d.Added) < 10 {
		t.Errorf("delta -%d +%d: the edit deletes a DS, an NS and a TXT and adds delegations", len(d.Deleted), len(d.Added))
	}
	if got := applyDelta(t, v100, d); got.Digest != v101.Digest {
		t.Errorf("100 + delta has digest %s, version 101 %s", got.Digest, v101.Digest)
	}
	if again, err := s.Delta(ctx, "test.", 100, v101); err != nil || again != d {
		t.Errorf("second Delta: %p %v, want the cached %p", again, err, d)
	}

	// Unknown serial, too big a change: the caller sends the whole zone.
	if _, err := s.Delta(ctx, "test.", 99, v101); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delta from an unknown serial: %v, want ErrNotFound", err)
	}
	if _, err := s.Delta(ctx, "test.", 101, v102); !errors.Is(err, ErrDeltaTooBig) {
		t.Errorf("Delta to a nearly empty version: %v, want ErrDeltaTooBig", err)
	}
	from, del, add, ok, err := s.Diff(ctx, "test.", 99, v101)
	if ok || err != nil || from != nil || del != nil || add != nil {
		t.Errorf("Diff from an unknown serial: ok %v err %v, want not ok and no error", ok, err)
	}
	from, del, add, ok, err = s.Diff(ctx, "test.", 100, v101)
	if !ok || err != nil || from.Serial != 100 || len(del) != len(d.Deleted) || len(add) != len(d.Added) {
		t.Errorf("Diff 100 -> 101: ok %v err %v", ok, err)
	}

	// A target that is not stored: its text comes from its records.
	v103 := edited(t, 103, 2040)
	d, err = s.Delta(ctx, "test.", 101, v103)
	if err != nil {
		t.Fatalf("Delta to an unstored version: %v", err)
	}
	if got := applyDelta(t, v101, d); got.Digest != v103.Digest {
		t.Errorf("101 + delta has digest %s, version 103 %s", got.Digest, v103.Digest)
	}

	// A damaged object is never used for a difference.
	m, _ := s.Get("test.", 102)
	if err := os.WriteFile(s.objectPath(m.Digest), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delta(ctx, "test.", 102, v103); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Delta from a damaged object: %v, want ErrCorrupt", err)
	}
	if _, _, _, ok, err := s.Diff(ctx, "test.", 102, v103); ok || err == nil {
		t.Errorf("Diff from a damaged object: ok %v err %v, want an error", ok, err)
	}
}
