package store_test

import (
	"testing"
	"time"

	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
)

// The zone index answers "what was published at T" across sites: after a
// switchover the newest publication is the new site's, whatever serials
// each site's own store marks published.
func TestPublishedAsOf(t *testing.T) {
	_, cli := etcdtest.Start(t)
	keys := store.Keys{Prefix: "/regdr"}
	ctx := ctxT(t)
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, v := range []store.PublishedVersion{
		{Zone: "test.", Serial: 100, Digest: "a", Site: "tokyo", Epoch: 1, Published: t0},
		{Zone: "test.", Serial: 105, Digest: "b", Site: "osaka", Epoch: 2, Published: t0.Add(time.Minute)},
		{Zone: "test.", Serial: 110, Digest: "c", Site: "tokyo", Epoch: 3, Published: t0.Add(2 * time.Minute)},
	} {
		if err := store.RecordPublished(ctx, cli, keys, v); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		at     time.Time
		serial uint32
		found  bool
	}{
		{t0.Add(-time.Second), 0, false},
		{t0.Add(30 * time.Second), 100, true},
		{t0.Add(90 * time.Second), 105, true},
		{t0.Add(time.Hour), 110, true},
	}
	for _, tc := range tests {
		v, found, err := store.PublishedAsOf(ctx, cli, keys, "test.", tc.at)
		if err != nil || found != tc.found || v.Serial != tc.serial {
			t.Errorf("as of %s: serial %d found %v (%v), want %d %v", tc.at.Format(time.TimeOnly), v.Serial, found, err, tc.serial, tc.found)
		}
	}
	last, found, err := store.LastPublished(ctx, cli, keys, "test.")
	if err != nil || !found || last.Serial != 110 || last.Site != "tokyo" {
		t.Errorf("last published %+v %v %v", last, found, err)
	}
}
