package zonestore

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	tests := []struct {
		name        string
		keep        int
		published   []uint32 // marked published in this order
		want        []uint32 // serials left, List order
		wantRemoved int
	}{
		{name: "keeps the published one beyond keep", keep: 2, published: []uint32{2}, want: []uint32{2, 5, 6}, wantRemoved: 3},
		{name: "keep 0 keeps latest and published", keep: 0, published: []uint32{2}, want: []uint32{2, 6}, wantRemoved: 4},
		{name: "keep 0, nothing published", keep: 0, want: []uint32{6}, wantRemoved: 5},
		{name: "latest published, not the first published", keep: 1, published: []uint32{1, 3}, want: []uint32{3, 6}, wantRemoved: 4},
		{name: "rolled back to an old version", keep: 1, published: []uint32{1, 4, 1}, want: []uint32{1, 6}, wantRemoved: 4},
		{name: "published is among the newest", keep: 3, published: []uint32{5}, want: []uint32{4, 5, 6}, wantRemoved: 3},
		{name: "keep more than stored", keep: 10, published: []uint32{2}, want: []uint32{1, 2, 3, 4, 5, 6}, wantRemoved: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			digests := map[uint32]string{}
			for i := range 6 {
				serial := uint32(i + 1)
				m := mustPut(t, s, gen(t, "test.", serial, 40), accepted(t0.Add(time.Duration(i)*time.Hour)))
				digests[serial] = m.Digest
			}
			other := mustPut(t, s, gen(t, "other.", 1, 40), accepted(t0))
			for i, serial := range tt.published {
				if err := s.MarkPublished("test.", serial, t0.Add(time.Duration(10+i)*time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			// A crashed writer's leftover, which Prune clears.
			leftover := filepath.Join(s.Dir(), "objects", tmpPrefix+"crashed.zone-123")
			write(t, leftover, "half a zone")

			removed, err := s.Prune("test.", tt.keep)
			if err != nil {
				t.Fatalf("Prune: %v", err)
			}
			if removed != tt.wantRemoved {
				t.Errorf("Prune removed %d, want %d", removed, tt.wantRemoved)
			}
			ms, err := s.List("test.")
			if err != nil {
				t.Fatal(err)
			}
			if got := serials(ms); !slices.Equal(got, tt.want) {
				t.Errorf("left %v, want %v", got, tt.want)
			}
			// Exactly the objects still referenced remain, and each
			// remaining version still loads.
			wantObjects := []string{other.Digest + ".zone"}
			for _, m := range ms {
				wantObjects = append(wantObjects, m.Digest+".zone")
				if _, err := s.Load(m); err != nil {
					t.Errorf("Load %d after Prune: %v", m.Serial, err)
				}
			}
			slices.Sort(wantObjects)
			if got := files(t, filepath.Join(s.Dir(), "objects")); !slices.Equal(got, wantObjects) {
				t.Errorf("objects left %q, want %q", got, wantObjects)
			}
			if _, err := s.Get("other.", 1); err != nil {
				t.Errorf("Prune of test. touched other.: %v", err)
			}
			if len(tt.published) > 0 {
				lp, err := s.LatestPublished("test.")
				if want := tt.published[len(tt.published)-1]; err != nil || lp.Serial != want {
					t.Errorf("LatestPublished after Prune = %d, %v; want %d", lp.Serial, err, want)
				}
			}
			for serial, d := range digests {
				if !slices.Contains(tt.want, serial) {
					if _, err := os.Stat(s.objectPath(d)); !os.IsNotExist(err) {
						t.Errorf("object of pruned serial %d still there (%v)", serial, err)
					}
				}
			}
		})
	}
}

func TestPruneRefuses(t *testing.T) {
	s := newStore(t)
	mustPut(t, s, gen(t, "test.", 1, 20), accepted(t0))
	if _, err := s.Prune("test.", -1); err == nil || !strings.Contains(err.Error(), "keep -1 is negative") {
		t.Errorf("Prune keep -1: %v, want refusal", err)
	}
	// An empty origin prunes nothing and fails nothing.
	if n, err := s.Prune("nothing.", 0); err != nil || n != 0 {
		t.Errorf("Prune of an origin without versions = %d, %v", n, err)
	}
	if _, err := s.Get("test.", 1); err != nil {
		t.Errorf("version gone after refused prunes: %v", err)
	}
}
