package knotlab

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/portcheck"
	"github.com/regdr/regdr/replicator/zone/zonetest"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zoneserve"
)

const (
	origin   = "lab.test."
	keyName  = "xfr.lab.test."
	secret   = "bGFiLXNlY3JldC1sYWItc2VjcmV0LWxhYi1zZWNyZXQ=" // 32 bytes
	badValue = "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhlcg=="
)

// freePort returns a loopback address whose port was free for TCP and UDP
// a moment ago.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	ap, err := portcheck.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// waitSerial polls the server's SOA until it is want or the deadline.
func waitSerial(ctx context.Context, t *testing.T, addr string, want uint32) (uint32, error) {
	t.Helper()
	var got uint32
	var err error
	for {
		got, err = zonepull.QuerySerial(ctx, addr, origin)
		if err == nil && got == want {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, errors.Join(ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// The lab's path end to end with the real Knot: bootstrap transfer, NOTIFY
// driven refresh, TSIG on both sides (verified by Knot and by kdig, which
// are independent of miekg), and transfers back out of Knot.
func TestKnotSecondary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))

	srv, err := zoneserve.New(zoneserve.Options{Addr: "127.0.0.1:0", TSIG: map[string]string{keyName: secret}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetZone(zonetest.Zone(t, origin, 100, 30))

	cfg := Config{
		Dir:           t.TempDir(),
		Listen:        freePort(t),
		Zones:         []ZoneConf{{Origin: origin, Primaries: []netip.AddrPort{srv.Addr()}}},
		TSIGName:      keyName,
		TSIGAlgorithm: "hmac-sha256",
		TSIGSecret:    secret,
	}
	k, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	if k.Pid() <= 0 {
		t.Errorf("Pid() = %d", k.Pid())
	}
	if fi, err := os.Stat(k.ConfigPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config file %s: mode %v, err %v; want 0600", k.ConfigPath(), fi.Mode().Perm(), err)
	}

	// Bootstrap: Knot transfers serial 100 on its own at start.
	bootCtx, bootCancel := context.WithTimeout(ctx, 10*time.Second)
	if got, err := waitSerial(bootCtx, t, k.Addr(), 100); err != nil {
		t.Fatalf("Knot serves serial %d, want 100: %v\n%s", got, err, k.logTail())
	}
	bootCancel()
	if got, err := k.SerialKdig(ctx, origin); err != nil || got != 100 {
		t.Fatalf("kdig SOA +short: serial %d, err %v; want 100", got, err)
	}

	// NOTIFY: the test zone's refresh is an hour, so only the NOTIFY
	// can make Knot fetch 101 within the second.
	srv.SetZone(zonetest.Zone(t, origin, 101, 40))
	start := time.Now()
	res := zoneserve.Notify(ctx, []string{k.Addr()}, origin, 101, keyName, secret)
	if !res[0].Acked {
		t.Fatalf("Knot did not acknowledge NOTIFY: %+v\n%s", res[0], k.logTail())
	}
	notifyCtx, notifyCancel := context.WithDeadline(ctx, start.Add(time.Second))
	got, err := waitSerial(notifyCtx, t, k.Addr(), 101)
	notifyCancel()
	if err != nil {
		t.Fatalf("1s after NOTIFY Knot serves serial %d, want 101: %v\n%s", got, err, k.logTail())
	}
	t.Logf("Knot served serial 101 %v after NOTIFY", time.Since(start).Round(time.Millisecond))
	if got, err := k.SerialKdig(ctx, origin); err != nil || got != 101 {
		t.Errorf("kdig SOA +short after NOTIFY: serial %d, err %v; want 101", got, err)
	}

	// A NOTIFY signed with a wrong secret is refused by Knot.
	res = zoneserve.Notify(ctx, []string{k.Addr()}, origin, 101, keyName, badValue)
	if res[0].Acked || !errors.Is(res[0].Err, zoneserve.ErrNotifyRefused) {
		t.Errorf("NOTIFY with a wrong secret: %+v, want refused", res[0])
	}

	// AXFR from the hidden primary without TSIG: refused (kdig's view).
	out, err := kdigAt(ctx, k.paths.Kdig, srv.Addr(), origin, "AXFR")
	if err == nil || !strings.Contains(out+err.Error(), "REFUSED") || strings.Contains(out, "\tSOA\t") {
		t.Errorf("unsigned AXFR from the primary: err %v, output %q; want REFUSED and no records", err, out)
	}

	// A 10,000-record zone: kdig (independent TSIG code) transfers it
	// from our primary with the key, checking every message's TSIG.
	big := zonetest.Zone(t, origin, 102, 10000)
	srv.SetZone(big)
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte("hmac-sha256:"+keyName+":"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = kdigAt(ctx, k.paths.Kdig, srv.Addr(), origin, "AXFR", "-k", keyFile, "+nocomments", "+nostats")
	if err != nil {
		t.Fatalf("kdig AXFR with TSIG: %v", err)
	}
	if n, signed := countRecords(out); n != big.Len()+1 || signed < 2 {
		t.Errorf("kdig AXFR with TSIG: %d records in %d signed messages, want %d in several", n, signed, big.Len()+1)
	}

	// Pull round trip from our primary.
	pulled, err := zonepull.Pull(ctx, srv.Addr().String(), origin, keyName, secret)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Digest != big.Digest || pulled.Serial != 102 || pulled.Len() != big.Len() {
		t.Errorf("pulled serial %d len %d digest %s; served 102 %d %s", pulled.Serial, pulled.Len(), pulled.Digest, big.Len(), big.Digest)
	}
	// ... with the wrong secret: refused.
	if _, err := zonepull.Pull(ctx, srv.Addr().String(), origin, keyName, badValue); !errors.Is(err, zonepull.ErrRefused) {
		t.Errorf("Pull with a wrong secret: %v, want ErrRefused", err)
	}

	// Knot takes the big zone on NOTIFY, and Pull from Knot (TSIG signed
	// by Knot's own code) gives back the same digest.
	res = zoneserve.Notify(ctx, []string{k.Addr()}, origin, 102, keyName, secret)
	if !res[0].Acked {
		t.Fatalf("NOTIFY 102: %+v", res[0])
	}
	bigCtx, bigCancel := context.WithTimeout(ctx, 10*time.Second)
	if got, err := waitSerial(bigCtx, t, k.Addr(), 102); err != nil {
		t.Fatalf("Knot serves %d, want 102: %v\n%s", got, err, k.logTail())
	}
	bigCancel()
	fromKnot, err := zonepull.Pull(ctx, k.Addr(), origin, keyName, secret)
	if err != nil {
		t.Fatalf("Pull from Knot: %v", err)
	}
	if fromKnot.Digest != big.Digest {
		t.Errorf("zone transferred through Knot has digest %s, want %s (counts %v vs %v)", fromKnot.Digest, big.Digest, fromKnot.Counts, big.Counts)
	}
	// Knot refuses a wrong secret with NOTAUTH and a TSIG error.
	_, err = zonepull.Pull(ctx, k.Addr(), origin, keyName, badValue)
	if !errors.Is(err, zonepull.ErrRefused) || !strings.Contains(err.Error(), "BADSIG") {
		t.Errorf("Pull from Knot with a wrong secret: %v, want refused with BADSIG", err)
	}

	// Stop: the process is gone and the port is free.
	if err := k.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if k.Running() {
		t.Error("knotd still running after Stop")
	}
	if err := portcheck.Free(k.Addr()); err != nil {
		t.Errorf("port still busy after Stop: %v", err)
	}
}

func kdigAt(ctx context.Context, kdig string, at netip.AddrPort, args ...string) (string, error) {
	k := &Knot{paths: Paths{Kdig: kdig}, cfg: Config{Listen: at}}
	return k.Kdig(ctx, args...)
}

// countRecords counts the zone records and the TSIG pseudo-records (one
// per signed message) in kdig's output.
func countRecords(out string) (records, tsigs int) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) < 4 || strings.HasPrefix(l, ";"):
		case f[3] == "TSIG":
			tsigs++
		default:
			records++
		}
	}
	return records, tsigs
}
