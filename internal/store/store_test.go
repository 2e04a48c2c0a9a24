package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type doc struct {
	N int    `json:"n"`
	S string `json:"s"`
}

func TestJSONHelpers(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	const key = "/regdr/test/doc"

	var got doc
	if _, found, err := store.GetJSON(ctx, cli, key, &got); err != nil || found {
		t.Fatalf("GetJSON missing = found %v, err %v; want not found, nil", found, err)
	}
	if err := store.CreateJSON(ctx, cli, key, doc{N: 1, S: "a"}); err != nil {
		t.Fatalf("CreateJSON: %v", err)
	}
	err := store.CreateJSON(ctx, cli, key, doc{N: 2})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateJSON = %v, want ErrExists", err)
	}
	rev, found, err := store.GetJSON(ctx, cli, key, &got)
	if err != nil || !found || got != (doc{N: 1, S: "a"}) || rev == 0 {
		t.Fatalf("GetJSON = %+v rev %d found %v err %v", got, rev, found, err)
	}

	if err := store.UpdateJSON(ctx, cli, key, doc{N: 3}, rev); err != nil {
		t.Fatalf("UpdateJSON at current rev: %v", err)
	}
	// rev is now stale: the same CAS again must lose and change nothing.
	err = store.UpdateJSON(ctx, cli, key, doc{N: 4}, rev)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("UpdateJSON at stale rev = %v, want ErrConflict", err)
	}
	if _, _, err := store.GetJSON(ctx, cli, key, &got); err != nil || got.N != 3 {
		t.Fatalf("after lost CAS: %+v, %v; want N=3", got, err)
	}
	if err := store.UpdateJSON(ctx, cli, "/regdr/test/absent", doc{}, 5); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("UpdateJSON on absent key = %v, want ErrConflict", err)
	}

	if _, err := cli.Put(ctx, "/regdr/test/bad", "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.GetJSON(ctx, cli, "/regdr/test/bad", &got); err == nil {
		t.Fatal("GetJSON decoded invalid JSON without error")
	}
}

func TestActiveRecord(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	keys := store.Keys{Prefix: "/lab"}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.FixedZone("JST", 9*3600))

	if _, found, err := store.GetActive(ctx, cli, keys); err != nil || found {
		t.Fatalf("GetActive before init: found %v err %v", found, err)
	}
	if _, err := store.CASActive(ctx, cli, keys, 1, "osaka", "op-1", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CASActive before init = %v, want ErrNotFound", err)
	}
	a, err := store.InitActive(ctx, cli, keys, "tokyo", "bootstrap")
	if err != nil {
		t.Fatalf("InitActive: %v", err)
	}
	if a.Epoch != 1 || a.Site != "tokyo" {
		t.Fatalf("InitActive = %+v, want tokyo at epoch 1", a)
	}
	if _, err := store.InitActive(ctx, cli, keys, "osaka", "again"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second InitActive = %v, want ErrExists", err)
	}

	tests := []struct {
		name      string
		expect    uint64
		site      string
		wantEpoch uint64 // stored epoch afterwards
		wantSite  string
		wantErr   error
		seenEpoch uint64
	}{
		{"epoch ahead of stored refused", 2, "osaka", 1, "tokyo", store.ErrEpochChanged, 1},
		{"right epoch bumps", 1, "osaka", 2, "osaka", nil, 0},
		{"old epoch refused after bump", 1, "tokyo", 2, "osaka", store.ErrEpochChanged, 2},
		{"same site re-fence bumps", 2, "osaka", 3, "osaka", nil, 0},
		{"far-ahead epoch refused", 9, "tokyo", 3, "osaka", store.ErrEpochChanged, 3},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0.Add(time.Duration(i+1) * time.Minute)
			got, err := store.CASActive(ctx, cli, keys, tt.expect, tt.site, tt.name, now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CASActive(%d, %s) = %v, want %v", tt.expect, tt.site, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				var ee *store.EpochError
				if !errors.As(err, &ee) || ee.Seen.Epoch != tt.seenEpoch || ee.Expected != tt.expect {
					t.Fatalf("error %v does not carry seen epoch %d", err, tt.seenEpoch)
				}
			} else if got.Epoch != tt.expect+1 || got.Site != tt.site || !got.Since.Equal(now) || got.Operation != tt.name {
				t.Fatalf("CASActive returned %+v", got)
			}
			stored, found, err := store.GetActive(ctx, cli, keys)
			if err != nil || !found {
				t.Fatalf("GetActive: found %v err %v", found, err)
			}
			if stored.Epoch != tt.wantEpoch || stored.Site != tt.wantSite {
				t.Fatalf("stored %+v, want %s at epoch %d", stored, tt.wantSite, tt.wantEpoch)
			}
		})
	}
	if _, err := store.CASActive(ctx, cli, keys, 3, "", "x", t0); err == nil {
		t.Fatal("CASActive accepted an empty site")
	}
}

// TestCASActiveRace: writers that read the same epoch race; exactly one
// may win each round, whatever the interleaving.
func TestCASActiveRace(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	var keys store.Keys
	now := time.Now()
	if _, err := store.InitActive(ctx, cli, keys, "tokyo", "bootstrap"); err != nil {
		t.Fatal(err)
	}
	sites := []string{"tokyo", "osaka"}
	for round := uint64(1); round <= 5; round++ {
		writers := 2
		if round > 1 {
			writers = 6
		}
		var wg sync.WaitGroup
		errs := make([]error, writers)
		start := make(chan struct{})
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[w] = store.CASActive(ctx, cli, keys, round, sites[w%2], "race", now)
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for w, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrEpochChanged):
			default:
				t.Fatalf("round %d writer %d: unexpected error %v", round, w, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d of %d writers won, want exactly 1", round, wins, writers)
		}
		a, _, err := store.GetActive(ctx, cli, keys)
		if err != nil || a.Epoch != round+1 {
			t.Fatalf("round %d: stored epoch %d (err %v), want %d", round, a.Epoch, err, round+1)
		}
	}
}

func TestFreezes(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	var keys store.Keys
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

	if _, frozen, err := store.FreezeFor(ctx, cli, keys, "test."); err != nil || frozen {
		t.Fatalf("FreezeFor with no freezes: frozen %v err %v", frozen, err)
	}
	if err := store.PutFreeze(ctx, cli, keys, store.Freeze{Zone: "Test", Reason: "maintenance", By: "alice", Since: now}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutFreeze(ctx, cli, keys, store.Freeze{Zone: "in-addr.arpa", Reason: "restore", By: "bob", Since: now}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []store.Freeze{
		{Zone: "x.", By: "alice", Since: now},
		{Zone: "x.", Reason: "r", Since: now},
		{Zone: "x.", Reason: "r", By: "alice"},
	} {
		if err := store.PutFreeze(ctx, cli, keys, bad); err == nil {
			t.Errorf("PutFreeze(%+v) accepted an incomplete freeze", bad)
		}
	}

	f, frozen, err := store.FreezeFor(ctx, cli, keys, "TEST.")
	if err != nil || !frozen || f.Zone != "test." || f.By != "alice" {
		t.Fatalf("FreezeFor(TEST.) = %+v frozen %v err %v; want alice's freeze of test.", f, frozen, err)
	}
	if _, frozen, _ := store.FreezeFor(ctx, cli, keys, "other."); frozen {
		t.Fatal("other. reported frozen by another zone's freeze")
	}

	if err := store.PutFreeze(ctx, cli, keys, store.Freeze{Reason: "cold start", By: "regdr", Since: now}); err != nil {
		t.Fatal(err)
	}
	f, frozen, err = store.FreezeFor(ctx, cli, keys, "other.")
	if err != nil || !frozen || f.Zone != "" || f.Reason != "cold start" {
		t.Fatalf("FreezeFor(other.) under an all-zones freeze = %+v frozen %v err %v", f, frozen, err)
	}

	list, err := store.ListFreezes(ctx, cli, keys)
	if err != nil {
		t.Fatal(err)
	}
	var zones []string
	for _, f := range list {
		zones = append(zones, f.Zone)
	}
	if want := []string{"", "in-addr.arpa.", "test."}; !slices.Equal(zones, want) {
		t.Fatalf("ListFreezes zones = %q, want %q", zones, want)
	}

	if existed, err := store.DeleteFreeze(ctx, cli, keys, ""); err != nil || !existed {
		t.Fatalf("DeleteFreeze(all) = %v, %v", existed, err)
	}
	if existed, err := store.DeleteFreeze(ctx, cli, keys, ""); err != nil || existed {
		t.Fatalf("second DeleteFreeze(all) = %v, %v; want false, nil", existed, err)
	}
	if _, frozen, _ := store.FreezeFor(ctx, cli, keys, "other."); frozen {
		t.Fatal("other. still frozen after the all-zones thaw")
	}

	// A record filed under the wrong key must not be read as a freeze of
	// the zone it names.
	if _, err := cli.Put(ctx, keys.Freeze("x."), `{"zone":"y.","reason":"r","by":"b","since":"2026-03-01T00:00:00Z"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ListFreezes(ctx, cli, keys); err == nil {
		t.Fatal("ListFreezes accepted a record whose zone does not match its key")
	}
}
