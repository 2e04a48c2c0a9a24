package zonegen

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/internal/zonesign"
)

const origin = "test."

// labRegistry starts a real PostgreSQL primary with the registry schema
// applied and returns it with a connection to the registry database.
func labRegistry(t *testing.T) (*pglab.Cluster, *pgx.Conn) {
	t.Helper()
	c := pglabtest.Primary(t)
	conn := pglabtest.Conn(t, c, "registry")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := registry.Apply(ctx, conn); err != nil {
		t.Fatal(err)
	}
	return c, conn
}

// genOptions are the options every test starts from: fresh keys, output in
// a fresh directory.
func genOptions(t *testing.T, c *pglab.Cluster) Options {
	t.Helper()
	keyDir := filepath.Join(t.TempDir(), "keys")
	for _, ksk := range []bool{true, false} {
		if _, err := zonesign.GenerateKey(keyDir, origin, 0, ksk); err != nil {
			t.Fatal(err)
		}
	}
	return Options{
		ConnString: c.ConnString("registry"),
		Origin:     origin,
		KeyDir:     keyDir,
		OutFile:    filepath.Join(t.TempDir(), "zones", "test.zone"),
		ApexNS:     []string{"ns1.nic.test.", "ns2.nic.example."},
		ApexGlue:   map[string][]netip.Addr{"ns1.nic.test.": {netip.MustParseAddr("192.0.2.53")}},
		Logger:     pglabtest.Logger(t),
	}
}

func readZone(t *testing.T, path string) []dns.RR {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rrs []dns.RR
	zp := dns.NewZoneParser(f, "", path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone file does not parse: %v", err)
	}
	return rrs
}

// delegations are the owner names below the apex with an NS RRset.
func delegations(rrs []dns.RR) map[string]bool {
	d := map[string]bool{}
	for _, rr := range rrs {
		if h := rr.Header(); h.Rrtype == dns.TypeNS && h.Name != origin {
			d[h.Name] = true
		}
	}
	return d
}

func TestReadSnapshot(t *testing.T) {
	_, conn := labRegistry(t)
	ctx := t.Context()
	fixture, err := os.ReadFile("testdata/snapshot.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(fixture)); err != nil {
		t.Fatalf("load testdata/snapshot.sql: %v", err)
	}

	rec := &recordingBeginner{conn: conn}
	s, err := ReadSnapshot(ctx, rec, origin)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.opts) != 1 || rec.opts[0].IsoLevel != pgx.RepeatableRead || rec.opts[0].AccessMode != pgx.ReadOnly {
		t.Fatalf("transactions %+v, want exactly one repeatable-read read-only", rec.opts)
	}
	var labels []string
	for _, d := range s.Delegations {
		labels = append(labels, d.Label)
	}
	slices.Sort(labels)
	if want := []string{"kawa", "kumo", "yama"}; !slices.Equal(labels, want) {
		t.Fatalf("delegations %v, want %v (inactive and name-server-less domains excluded)", labels, want)
	}
	var wantMax int64
	if err := conn.QueryRow(ctx, "SELECT max(id) FROM journal").Scan(&wantMax); err != nil {
		t.Fatal(err)
	}
	if s.JournalID != wantMax {
		t.Errorf("journal id %d, want %d", s.JournalID, wantMax)
	}
	for _, d := range s.Delegations {
		switch d.Label {
		case "kumo":
			if !slices.Equal(d.NS, []string{"ns1.kumo.test.", "ns2.kumo.test."}) || len(d.DS) != 1 || d.DS[0].KeyTag != 4242 {
				t.Errorf("kumo: %+v", d)
			}
		case "kawa":
			if len(d.DS) != 2 {
				t.Errorf("kawa has %d DS, want 2", len(d.DS))
			}
		}
	}
	wantGlue := map[string][]netip.Addr{
		"ns1.kumo.test.": {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
		"ns2.kumo.test.": {netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")},
	}
	if len(s.Glue) != len(wantGlue) {
		t.Fatalf("glue for %d hosts (%v), want %d: only in-zone hosts of active delegations", len(s.Glue), s.Glue, len(wantGlue))
	}
	for h, want := range wantGlue {
		if !slices.Equal(s.Glue[h], want) {
			t.Errorf("glue of %s = %v, want %v", h, s.Glue[h], want)
		}
	}

	// A network where a host address belongs is refused, not truncated.
	if _, err := conn.Exec(ctx, `UPDATE hosts SET ipv4 = '{192.0.2.0/24}' WHERE fqdn = 'ns2.kumo.test.'`); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSnapshot(ctx, conn, origin); err == nil || !strings.Contains(err.Error(), "network") {
		t.Fatalf("err = %v, want a refusal of the network address", err)
	}
}

// recordingBeginner records the options of every transaction begun.
type recordingBeginner struct {
	conn *pgx.Conn
	opts []pgx.TxOptions
}

func (r *recordingBeginner) BeginTx(ctx context.Context, o pgx.TxOptions) (pgx.Tx, error) {
	r.opts = append(r.opts, o)
	return r.conn.BeginTx(ctx, o)
}

func TestGenerateOnceFromPopulatedRegistry(t *testing.T) {
	c, conn := labRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := registry.Populate(ctx, conn, origin, 1000); err != nil {
		t.Fatal(err)
	}
	var want int64
	if err := conn.QueryRow(ctx, registry.DelegationCount).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if want != 1000 {
		t.Fatalf("registry reports %d delegations after Populate(1000)", want)
	}

	opts := genOptions(t, c)
	opts.NSEC3 = true
	serial, err := GenerateOnce(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	rrs := readZone(t, opts.OutFile)
	if got := len(delegations(rrs)); got != 1000 {
		t.Errorf("zone has %d delegations, registry %d", got, want)
	}
	counts := map[uint16]int{}
	for _, rr := range rrs {
		counts[rr.Header().Rrtype]++
	}
	for _, typ := range []uint16{dns.TypeDNSKEY, dns.TypeRRSIG, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeDS, dns.TypeA} {
		if counts[typ] == 0 {
			t.Errorf("zone has no %s records", dns.TypeToString[typ])
		}
	}
	soa, ok := rrs[0].(*dns.SOA)
	if !ok || soa.Serial != serial {
		t.Fatalf("first record %v, want the SOA with serial %d", rrs[0], serial)
	}
	for _, argv := range [][]string{
		{"dnssec-verify", "-o", origin, opts.OutFile},
		{"kzonecheck", "-o", origin, "-d", "on", opts.OutFile},
	} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s rejects the generated zone: %v\n%s", argv[0], err, out)
		}
	}

	// A second run reads the serial back from the file: never backwards,
	// never the same, even within one second.
	again, err := GenerateOnce(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !SerialNewer(again, serial) {
		t.Fatalf("second serial %d is not newer than %d", again, serial)
	}
}

type written struct {
	serial    uint32
	journalID int64
}

func TestRunFollowsRegistryAndSurvivesRestart(t *testing.T) {
	c, conn := labRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := registry.Populate(ctx, conn, origin, 100); err != nil {
		t.Fatal(err)
	}

	opts := genOptions(t, c)
	events := make(chan written, 64)
	opts.OnWritten = func(s uint32, j int64) {
		select {
		case events <- written{s, j}:
		case <-ctx.Done():
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	var g Generator
	go func() { done <- g.Run(runCtx, opts) }()

	waitFor := func(within time.Duration, what string, ok func(written) bool) written {
		t.Helper()
		timer := time.NewTimer(within)
		defer timer.Stop()
		for {
			select {
			case w := <-events:
				if ok(w) {
					return w
				}
			case err := <-done:
				t.Fatalf("Run returned while waiting for %s: %v", what, err)
			case <-timer.C:
				t.Fatalf("no zone with %s within %v", what, within)
			}
		}
	}
	first := waitFor(30*time.Second, "the initial generation", func(written) bool { return true })
	if got := len(delegations(readZone(t, opts.OutFile))); got != 100 {
		t.Fatalf("initial zone has %d delegations, want 100", got)
	}

	// A registration reaches the zone file within 2 s.
	start := time.Now()
	jid, err := registry.Register(ctx, conn, "zz-fresh", []string{"ns1.hosting01.net.", "ns2.hosting01.net."})
	if err != nil {
		t.Fatal(err)
	}
	w := waitFor(2*time.Second, "the registration", func(w written) bool { return w.journalID >= jid })
	if !SerialNewer(w.serial, first.serial) {
		t.Fatalf("serial %d after the registration is not newer than %d", w.serial, first.serial)
	}
	if !delegations(readZone(t, opts.OutFile))["zz-fresh.test."] {
		t.Fatal("zz-fresh.test. is not delegated in the new zone")
	}
	t.Logf("registration to new zone file: %v", time.Since(start))

	// A burst of registrations is debounced into a few zones, not one
	// zone per change, and the last zone holds them all.
	var last int64
	for i := range 20 {
		if last, err = registry.Register(ctx, conn, fmt.Sprintf("zz-burst%d", i), []string{"ns1.hosting03.net."}); err != nil {
			t.Fatal(err)
		}
	}
	zones := 0
	w = waitFor(2*time.Second, "the burst", func(w written) bool { zones++; return w.journalID >= last })
	if zones > 4 {
		t.Errorf("20 registrations in a burst made %d zones; the debounce should merge them", zones)
	}
	if got := len(delegations(readZone(t, opts.OutFile))); got != 100+1+20 {
		t.Fatalf("zone after the burst has %d delegations, want 121", got)
	}

	// The database goes away and comes back: Run reconnects and
	// regenerates (notifications sent meanwhile would be lost), and then
	// follows the next change as fast as before, so it is LISTENing again.
	stopCtx, cancelStop := context.WithTimeout(ctx, 30*time.Second)
	defer cancelStop()
	if err := c.Stop(stopCtx, "fast"); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(stopCtx); err != nil {
		t.Fatal(err)
	}
	re := waitFor(20*time.Second, "the regeneration after reconnecting", func(written) bool { return true })
	if !SerialNewer(re.serial, w.serial) {
		t.Fatalf("serial %d after reconnecting is not newer than %d", re.serial, w.serial)
	}
	conn2, err := pgx.Connect(stopCtx, c.ConnString("registry"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(context.Background())
	jid2, err := registry.Register(ctx, conn2, "zz-after-restart", []string{"ns1.hosting02.net.", "ns2.hosting02.net."})
	if err != nil {
		t.Fatal(err)
	}
	w2 := waitFor(2*time.Second, "the registration after the restart", func(w written) bool { return w.journalID >= jid2 })
	if !SerialNewer(w2.serial, re.serial) {
		t.Fatalf("serial %d after the restart is not newer than %d", w2.serial, re.serial)
	}
	if !delegations(readZone(t, opts.OutFile))["zz-after-restart.test."] {
		t.Fatal("zz-after-restart.test. is not delegated after the restart")
	}

	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v on cancel, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if s, j := g.Last(); s != w2.serial && !SerialNewer(s, w2.serial) || j < jid2 {
		t.Errorf("Last() = %d, %d; want at least %d, %d", s, j, w2.serial, jid2)
	}
}

// The generator's connection string names both sites, the standby first;
// target_session_attrs=read-write makes it read (and LISTEN on) the
// primary, as it must after a failover moves the primary.
func TestRunPicksThePrimaryOfBothSites(t *testing.T) {
	primary := pglabtest.Primary(t, "osaka")
	conn := pglabtest.Conn(t, primary, "registry")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := registry.Apply(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := registry.Populate(ctx, conn, origin, 10); err != nil {
		t.Fatal(err)
	}
	standby := pglabtest.Standby(t, primary, "osaka")

	opts := genOptions(t, primary)
	opts.ConnString = standby.ConnString("registry")
	if _, err := GenerateOnce(ctx, opts); !errors.Is(err, ErrStandby) {
		t.Fatalf("GenerateOnce on the standby: err = %v, want ErrStandby", err)
	}
	if _, err := os.Stat(opts.OutFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a zone file was written from the standby (stat: %v)", err)
	}

	opts.ConnString = fmt.Sprintf("host=%s,%s port=%d,%d user=regdr dbname=registry sslmode=disable target_session_attrs=read-write",
		standby.Host, primary.Host, standby.Port, primary.Port)
	events := make(chan int64, 16)
	opts.OnWritten = func(_ uint32, j int64) {
		select {
		case events <- j:
		case <-ctx.Done():
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	var g Generator
	go func() { done <- g.Run(runCtx, opts) }()
	defer func() { stop(); <-done }()

	wait := func(within time.Duration, min int64) {
		t.Helper()
		timer := time.NewTimer(within)
		defer timer.Stop()
		for {
			select {
			case j := <-events:
				if j >= min {
					return
				}
			case err := <-done:
				t.Fatalf("Run returned: %v", err)
			case <-timer.C:
				t.Fatalf("no zone with journal id %d within %v", min, within)
			}
		}
	}
	wait(30*time.Second, 1)
	jid, err := registry.Register(ctx, conn, "zz-primary", []string{"ns1.hosting01.net."})
	if err != nil {
		t.Fatal(err)
	}
	wait(2*time.Second, jid)
	if !delegations(readZone(t, opts.OutFile))["zz-primary.test."] {
		t.Fatal("zz-primary.test. missing from the zone")
	}
}

func TestReadSerial(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string
		want    uint32
		wantErr string
	}{
		{name: "no file is serial 0", content: nil, want: 0},
		{name: "SOA first", content: ptr("test. 3600 IN SOA ns1.nic.test. hostmaster.test. 1780000000 1800 900 604800 3600\ntest. 86400 IN NS ns1.nic.test.\n"), want: 1780000000},
		{name: "SOA not first", content: ptr("test. 86400 IN NS ns1.nic.test.\ntest. 3600 IN SOA ns1.nic.test. hostmaster.test. 42 1800 900 604800 3600\n"), want: 42},
		{name: "no SOA is an error, not 0", content: ptr("test. 86400 IN NS ns1.nic.test.\n"), wantErr: "no SOA"},
		{name: "garbage is an error", content: ptr("this is not a zone\n"), wantErr: "read serial"},
		{name: "SOA of another zone", content: ptr("example. 3600 IN SOA ns1.nic.test. hostmaster.test. 42 1800 900 604800 3600\n"), wantErr: "is not test."},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "zone"+string(rune('a'+i)))
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadSerial(path, origin)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadSerial = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestOptionsValidation(t *testing.T) {
	good := Options{ConnString: "host=127.0.0.1", Origin: "test.", KeyDir: "k", OutFile: "z", ApexNS: []string{"ns1.nic.test."}}
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no conn string", func(o *Options) { o.ConnString = "" }, "connection string"},
		{"origin without dot", func(o *Options) { o.Origin = "test" }, "trailing dot"},
		{"no key dir", func(o *Options) { o.KeyDir = "" }, "key directory"},
		{"no output", func(o *Options) { o.OutFile = "" }, "output file"},
		{"no apex NS", func(o *Options) { o.ApexNS = nil }, "apex name servers"},
		{"max delay below debounce", func(o *Options) { o.Debounce = time.Second; o.MaxDelay = time.Millisecond }, "bad timing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.change(&o)
			var g Generator
			err := g.Run(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run err = %v, want it to mention %q", err, tc.want)
			}
			if _, err := GenerateOnce(t.Context(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("GenerateOnce err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	d, err := good.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if d.Debounce != 100*time.Millisecond || d.MaxDelay != 2*time.Second || d.Idle != 10*time.Second {
		t.Errorf("defaults: debounce %v, max delay %v, idle %v", d.Debounce, d.MaxDelay, d.Idle)
	}
}
