package zonepull_test

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/portcheck"

	"github.com/regdr/regdr/internal/knotlab"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zone/zonetest"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zoneserve"
	"github.com/regdr/regdr/replicator/zonestore"
)

const (
	ixOrigin = "ixfr.test."
	ixKey    = "xfr.ixfr.test."
	ixSecret = "aXhmci1zZWNyZXQtaXhmci1zZWNyZXQtaXhmci1zZWM=" // 32 bytes
)

// ixVersion is serial of a zone of n delegations, without the DS of every
// drop-th (none when drop is 0).
func ixVersion(serial uint32, n, drop int) []dns.RR {
	var rrs []dns.RR
	for _, rr := range zonetest.Records(ixOrigin, serial, n) {
		if ds, ok := rr.(*dns.DS); ok && drop > 0 && int(ds.KeyTag)%drop == 0 {
			continue
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

func mustZone(t *testing.T, rrs []dns.RR) *zone.Zone {
	t.Helper()
	z, err := zone.FromRecords(ixOrigin, rrs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// Against regdr's own hidden primary: differences from the store's
// history, the whole zone without one, nothing when up to date.
func TestPullIXFRFromZoneserve(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := zonestore.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	start := func(h zoneserve.History) *zoneserve.Server {
		srv, err := zoneserve.New(zoneserve.Options{Addr: "127.0.0.1:0", TSIG: map[string]string{ixKey: ixSecret},
			Logger: slog.New(slog.DiscardHandler), History: h})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}
	v100, v101 := mustZone(t, ixVersion(100, 2000, 0)), mustZone(t, ixVersion(101, 2000, 7))
	at := time.Now()
	for _, z := range []*zone.Zone{v100, v101} {
		at = at.Add(time.Second)
		if _, err := store.Put(z, zonestore.Manifest{AcceptedAt: at, AcceptedBy: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	withHistory, without := start(store), start(nil)
	withHistory.SetZone(v101)
	without.SetZone(v101)

	for _, tt := range []struct {
		name        string
		srv         *zoneserve.Server
		have        *zone.Zone
		incremental bool
	}{
		{"differences from the store", withHistory, v100, true},
		{"up to date", withHistory, v101, true},
		{"no history: the whole zone", without, v100, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, inc, err := zonepull.PullIXFR(ctx, tt.srv.Addr().String(), ixOrigin, ixKey, ixSecret, tt.have)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != v101.Digest || got.Serial != 101 || inc != tt.incremental {
				t.Fatalf("got serial %d digest %s incremental %v; want 101 %s %v", got.Serial, got.Digest, inc, v101.Digest, tt.incremental)
			}
		})
	}
	// A version the primary never had: the whole zone, not a wrong one.
	other := mustZone(t, ixVersion(99, 10, 0))
	got, inc, err := zonepull.PullIXFR(ctx, withHistory.Addr().String(), ixOrigin, ixKey, ixSecret, other)
	if err != nil || inc || got.Digest != v101.Digest {
		t.Fatalf("from an unknown serial: %v, incremental %v, digest %s", err, inc, got.Digest)
	}
}

// Against Knot as a registry's signer that keeps the differences between
// the versions of its zone file: each step applies, several at once too.
func TestPullIXFRFromKnot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	file := filepath.Join(dir, "ixfr.zone")
	write := func(rrs []dns.RR) *zone.Zone {
		t.Helper()
		if err := zonesign.WriteFileAtomic(file, rrs); err != nil {
			t.Fatal(err)
		}
		z, err := zone.ParseFile(file, ixOrigin)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	v1 := write(ixVersion(1, 1500, 0))
	k, err := knotlab.Start(ctx, knotlab.Config{Dir: filepath.Join(dir, "knot"), Listen: freeAddr(t),
		Zones:    []knotlab.ZoneConf{{Origin: ixOrigin, File: file, IXFR: true}},
		TSIGName: ixKey, TSIGAlgorithm: "hmac-sha256", TSIGSecret: ixSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Stop(context.Background()) })
	reload := func(serial uint32) {
		t.Helper()
		if err := syscall.Kill(k.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for {
			if got, err := zonepull.QuerySerial(ctx, k.Addr(), ixOrigin); err == nil && got == serial {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("Knot never served serial %d", serial)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	have, err := zonepull.Pull(ctx, k.Addr(), ixOrigin, ixKey, ixSecret)
	if err != nil || have.Digest != v1.Digest {
		t.Fatalf("AXFR of serial 1: %v (digest %s, file %s)", err, have.Digest, v1.Digest)
	}
	v2 := write(ixVersion(2, 1500, 5))
	reload(2)
	got, inc, err := zonepull.PullIXFR(ctx, k.Addr(), ixOrigin, ixKey, ixSecret, have)
	if err != nil || !inc || got.Digest != v2.Digest {
		t.Fatalf("IXFR 1 -> 2: %v, incremental %v, digest %s, want %s", err, inc, got.Digest, v2.Digest)
	}
	v3 := write(ixVersion(3, 1510, 3))
	reload(3)
	got, inc, err = zonepull.PullIXFR(ctx, k.Addr(), ixOrigin, ixKey, ixSecret, have)
	if err != nil || !inc || got.Digest != v3.Digest {
		t.Fatalf("IXFR 1 -> 3: %v, incremental %v, digest %s, want %s", err, inc, got.Digest, v3.Digest)
	}
}

func freeAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ap, err := portcheck.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
