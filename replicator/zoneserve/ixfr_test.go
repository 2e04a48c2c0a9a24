package zoneserve_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/portcheck"

	"github.com/regdr/regdr/internal/knotlab"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zone/zonetest"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zoneserve"
	"github.com/regdr/regdr/replicator/zonestore"
)

var _ zoneserve.History = (*zonestore.Store)(nil)

const (
	ixOrigin = "ixfr.test."
	ixKey    = "xfr.ixfr.test."
	ixSecret = "aXhmci1zZWNyZXQtaXhmci1zZWNyZXQtaXhmci0zMmI=" // 32 bytes
)

// syncBuffer is a log sink the server's goroutines write to while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// version is zonetest's zone at serial with n records, minus the DS of
// every delegation whose number is a multiple of drop (0: none), so that
// consecutive versions differ by deletions as well as additions.
func version(t *testing.T, serial uint32, n, drop int) *zone.Zone {
	t.Helper()
	var rrs []dns.RR
	for _, rr := range zonetest.Records(ixOrigin, serial, n) {
		if ds, ok := rr.(*dns.DS); ok && drop > 0 && int(ds.KeyTag)%drop == 0 {
			continue
		}
		rrs = append(rrs, rr)
	}
	z, err := zone.FromRecords(ixOrigin, rrs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func ixfrFreePort(t *testing.T) netip.AddrPort {
	t.Helper()
	ap, err := portcheck.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func waitKnotSerial(ctx context.Context, addr string, want uint32) (uint32, error) {
	var got uint32
	var err error
	for {
		got, err = zonepull.QuerySerial(ctx, addr, ixOrigin)
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

// kdigTransfer runs kdig against the hidden primary and returns its
// records (TSIG pseudo-records left out) and the number of TSIGs.
func kdigTransfer(ctx context.Context, t *testing.T, kdig string, at netip.AddrPort, keyFile string, args ...string) ([]dns.RR, int, error) {
	t.Helper()
	a := append([]string{"@" + at.Addr().String(), "-p", strconv.Itoa(int(at.Port())), ixOrigin, "+nocomments", "+nostats"}, args...)
	if keyFile != "" {
		a = append(a, "-k", keyFile)
	}
	cmd := exec.CommandContext(ctx, kdig, a...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("kdig %s: %w: %s %s", strings.Join(a, " "), err, stdout.String(), stderr.String())
	}
	var rrs []dns.RR
	tsigs := 0
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, ";") {
			continue
		}
		if f := strings.Fields(l); len(f) > 3 && f[3] == "TSIG" {
			tsigs++
			continue
		}
		rr, err := dns.NewRR(l)
		if err != nil {
			return nil, 0, fmt.Errorf("kdig output line %q: %w", l, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs, tsigs, nil
}

// Knot as the secondary: the first transfer is a full one, every later
// one an IXFR answered from the store's differences, and what Knot then
// serves is exactly the stored version. kdig (Knot's own DNS and TSIG
// code) checks the IXFR answer format and the fallback to a full zone.
func TestIXFRToKnot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	paths, err := knotlab.Find()
	if err != nil {
		t.Fatal(err)
	}
	store, err := zonestore.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv, err := zoneserve.New(zoneserve.Options{
		Addr:    "127.0.0.1:0",
		TSIG:    map[string]string{ixKey: ixSecret},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		History: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	at := time.Now()
	publish := func(z *zone.Zone) {
		t.Helper()
		at = at.Add(time.Second)
		if _, err := store.Put(z, zonestore.Manifest{AcceptedAt: at, AcceptedBy: "test"}); err != nil {
			t.Fatal(err)
		}
		srv.SetZone(z)
	}
	v100 := version(t, 100, 3000, 0)
	publish(v100)

	knotDir := t.TempDir()
	k, err := knotlab.Start(ctx, knotlab.Config{
		Dir:           knotDir,
		Listen:        ixfrFreePort(t),
		Zones:         []knotlab.ZoneConf{{Origin: ixOrigin, Primaries: []netip.AddrPort{srv.Addr()}}},
		TSIGName:      ixKey,
		TSIGAlgorithm: "hmac-sha256",
		TSIGSecret:    ixSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k.Stop(context.Background()); err != nil {
			t.Errorf("stop Knot: %v", err)
		}
	}()
	knotLog := func() string {
		b, _ := os.ReadFile(filepath.Join(knotDir, "knot.log"))
		return string(b)
	}
	step := func(z *zone.Zone) {
		t.Helper()
		publish(z)
		if res := zoneserve.Notify(ctx, []string{k.Addr()}, ixOrigin, z.Serial, ixKey, ixSecret); !res[0].Acked {
			t.Fatalf("NOTIFY %d: %+v\n%s", z.Serial, res[0], knotLog())
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if got, err := waitKnotSerial(wctx, k.Addr(), z.Serial); err != nil {
			t.Fatalf("Knot serves %d, want %d: %v\n%s", got, z.Serial, err, knotLog())
		}
	}
	// Knot's view of a version: its own AXFR out, digested like ours.
	served := func(want *zone.Zone) {
		t.Helper()
		got, err := zonepull.Pull(ctx, k.Addr(), ixOrigin, ixKey, ixSecret)
		if err != nil {
			t.Fatalf("AXFR from Knot: %v", err)
		}
		if got.Serial != want.Serial || got.Digest != want.Digest {
			t.Fatalf("Knot serves serial %d digest %s (%d records), stored version %d has %s (%d records)",
				got.Serial, got.Digest, got.Len(), want.Serial, want.Digest, want.Len())
		}
	}

	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	if got, err := waitKnotSerial(wctx, k.Addr(), 100); err != nil {
		t.Fatalf("Knot serves %d, want 100: %v\n%s", got, err, knotLog())
	}
	wcancel()

	// 100 -> 101: additions (30 more records, a new TXT) and deletions
	// (every DS of a key tag divisible by 7, the old TXT).
	v101 := version(t, 101, 3030, 7)
	step(v101)
	served(v101)
	// 101 -> 102: DS come back, others go.
	v102 := version(t, 102, 3060, 5)
	step(v102)
	served(v102)

	kl := knotLog()
	if n := strings.Count(kl, "IXFR, incoming"); n < 2 || !strings.Contains(kl, "AXFR, incoming") {
		t.Errorf("Knot's log shows %d incoming IXFRs (want 2) after one AXFR:\n%s", n, kl)
	}
	if strings.Contains(kl, "AXFR-style") {
		t.Errorf("Knot received a full zone for an IXFR:\n%s", kl)
	}
	for _, want := range []string{"answer=\"incremental from 100\"", "answer=\"incremental from 101\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("server log has no %s:\n%s", want, logs.String())
		}
	}

	// kdig's IXFR: one condensed step 100 -> 102, checked against the
	// store's own difference.
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte("hmac-sha256:"+ixKey+":"+ixSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rrs, tsigs, err := kdigTransfer(ctx, t, paths.Kdig, srv.Addr(), keyFile, "-t", "IXFR=100")
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.Delta(ctx, ixOrigin, 100, v102)
	if err != nil {
		t.Fatal(err)
	}
	if len(rrs) != d.Len()+2 || tsigs < 1 {
		t.Fatalf("kdig IXFR=100: %d records in %d signed messages, want %d (delta -%d +%d plus 4 SOAs)",
			len(rrs), tsigs, d.Len()+2, len(d.Deleted), len(d.Added))
	}
	var soas []uint32
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			soas = append(soas, soa.Serial)
		}
	}
	if fmt.Sprint(soas) != "[102 100 102 102]" {
		t.Errorf("kdig IXFR=100 SOA serials %v, want [102 100 102 102]", soas)
	}
	if got, ok := rrs[len(d.Deleted)+2].(*dns.SOA); !ok || got.Serial != 102 {
		t.Errorf("record %d is %v, want the new SOA after the deletions", len(d.Deleted)+2, rrs[len(d.Deleted)+2])
	}

	// Serial unknown to the store: the whole zone, AXFR style.
	rrs, _, err = kdigTransfer(ctx, t, paths.Kdig, srv.Addr(), keyFile, "-t", "IXFR=50")
	if err != nil {
		t.Fatal(err)
	}
	if len(rrs) != v102.Len()+1 {
		t.Errorf("kdig IXFR=50: %d records, want the whole zone (%d)", len(rrs), v102.Len()+1)
	}
	// No TSIG: refused, nothing transferred.
	rrs, _, err = kdigTransfer(ctx, t, paths.Kdig, srv.Addr(), "", "-t", "IXFR=100")
	if err == nil && len(rrs) > 0 {
		t.Errorf("unsigned IXFR: %d records, want a refusal", len(rrs))
	}
}

// Every IXFR the store cannot answer with a smaller difference gets the
// whole zone: a serial it never stored, a difference bigger than the
// zone, a damaged stored version. The answer is always a zone the client
// can use, never an error.
func TestIXFRFallsBackToWholeZone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	paths, err := knotlab.Find()
	if err != nil {
		t.Fatal(err)
	}
	store, err := zonestore.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv, err := zoneserve.New(zoneserve.Options{
		Addr: "127.0.0.1:0", TSIG: map[string]string{ixKey: ixSecret},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), History: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	at := time.Now()
	// 100 is twice the size of the current version, so the difference
	// from it is bigger than the zone; 101 gets damaged; 104 is good.
	for _, z := range []*zone.Zone{version(t, 100, 4000, 0), version(t, 101, 2000, 0), version(t, 104, 2005, 5)} {
		at = at.Add(time.Second)
		if _, err := store.Put(z, zonestore.Manifest{AcceptedAt: at, AcceptedBy: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	cur := version(t, 105, 2010, 3)
	srv.SetZone(cur)
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte("hmac-sha256:"+ixKey+":"+ixSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m101, err := store.Get(ixOrigin, 101)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		serial  uint32
		damage  bool
		records int
	}{
		{"difference from 104", 104, false, -1},
		{"serial never stored", 99, false, cur.Len() + 1},
		{"difference bigger than the zone", 100, false, cur.Len() + 1},
		{"stored version damaged", 101, true, cur.Len() + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.damage {
				obj := filepath.Join(store.Dir(), "objects", m101.Digest+".zone")
				if err := os.WriteFile(obj, []byte("damaged\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rrs, _, err := kdigTransfer(ctx, t, paths.Kdig, srv.Addr(), keyFile, "-t", fmt.Sprintf("IXFR=%d", tt.serial))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.records
			if want < 0 {
				d, err := store.Delta(ctx, ixOrigin, tt.serial, cur)
				if err != nil {
					t.Fatal(err)
				}
				want = d.Len() + 2
				if want >= cur.Len() {
					t.Fatalf("the difference (%d records) is not smaller than the zone (%d)", want, cur.Len())
				}
			}
			if len(rrs) != want {
				t.Errorf("IXFR=%d: %d records, want %d", tt.serial, len(rrs), want)
			}
			if len(rrs) > 0 {
				if soa, ok := rrs[len(rrs)-1].(*dns.SOA); !ok || soa.Serial != 105 {
					t.Errorf("answer ends with %v, want SOA 105", rrs[len(rrs)-1])
				}
			}
		})
	}
	if !strings.Contains(logs.String(), "IXFR: no difference, sending the whole zone") {
		t.Errorf("the damaged version was not logged:\n%s", logs.String())
	}
}
