package unboundlab

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/knotlab"
	"github.com/regdr/regdr/internal/portcheck"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zoneserve"
)

const (
	tsigName   = "xfr.lab.test."
	tsigSecret = "bGFiLXNlY3JldC1sYWItc2VjcmV0LWxhYi1zZWNyZXQ=" // test-only, 32 bytes
)

// freeAddr returns a loopback address whose port was free for TCP and UDP
// a moment ago.
func freeAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ap, err := portcheck.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// records is a small registry-shaped zone. Every address in it is on
// loopback, so nothing it names could send the resolver off the machine
// even if the guards in the config failed.
func records(t *testing.T, origin string, serial uint32) []dns.RR {
	t.Helper()
	lines := []string{
		fmt.Sprintf("%s 3600 IN SOA ns1.%s hostmaster.%s %d 3600 900 604800 60", origin, origin, origin, serial),
		fmt.Sprintf("%s 3600 IN NS ns1.%s", origin, origin),
		fmt.Sprintf("ns1.%s 3600 IN A 127.0.0.1", origin),
		fmt.Sprintf(`%s 3600 IN TXT "unboundlab test zone"`, origin),
	}
	for i := range 6 {
		d := fmt.Sprintf("d%06d.%s", i, origin)
		lines = append(lines, fmt.Sprintf("%s 3600 IN NS ns.%s", d, d), fmt.Sprintf("ns.%s 3600 IN A 127.0.0.%d", d, i+2))
		if i%2 == 1 {
			lines = append(lines, fmt.Sprintf("%s 3600 IN DS %d 13 2 %064x", d, 1000+i, i+1))
		}
	}
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

// signedZone signs records for origin with a fresh KSK and ZSK and returns
// the zone and the KSK.
func signedZone(ctx context.Context, t *testing.T, origin string) ([]dns.RR, *zonesign.Key) {
	t.Helper()
	dir := t.TempDir()
	for _, ksk := range []bool{true, false} {
		if _, err := zonesign.GenerateKey(dir, origin, dns.ECDSAP256SHA256, ksk); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := zonesign.LoadKeys(dir, origin)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := zonesign.Sign(ctx, records(t, origin, 2026112401), origin, keys, zonesign.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return signed, keys[0] // KSKs sort first
}

// corruptRRSIG flips one byte of the signature over the RRset
// (owner, covered), in a copy of rrs.
func corruptRRSIG(t *testing.T, rrs []dns.RR, owner string, covered uint16) []dns.RR {
	t.Helper()
	out := make([]dns.RR, len(rrs))
	hit := false
	for i, rr := range rrs {
		out[i] = rr
		sig, ok := rr.(*dns.RRSIG)
		if !ok || sig.TypeCovered != covered || !strings.EqualFold(sig.Hdr.Name, owner) {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sig.Signature)
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)/2] ^= 0x5a
		c := dns.Copy(sig).(*dns.RRSIG)
		c.Signature = base64.StdEncoding.EncodeToString(raw)
		out[i] = c
		hit = true
	}
	if !hit {
		t.Fatalf("no RRSIG over %s %s to corrupt", owner, dns.TypeToString[covered])
	}
	return out
}

// The resolver against real parts: zones signed by zonesign, served by a
// real Knot secondary (transferred from zoneserve, as in the lab), and
// validated by a real Unbound trusting only the configured anchors.
func TestUnboundValidatesKnot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))

	const (
		good     = "good.test."
		tampered = "tampered.test."
		wrong    = "wrong-anchor.test."
	)
	goodRRs, goodKSK := signedZone(ctx, t, good)
	tamperedRRs, tamperedKSK := signedZone(ctx, t, tampered)
	tamperedRRs = corruptRRSIG(t, tamperedRRs, tampered, dns.TypeSOA)
	wrongRRs, _ := signedZone(ctx, t, wrong)
	// A KSK for the right name that never signed the zone: an operator
	// who configured the old key after a rollover.
	other, err := zonesign.GenerateKey(t.TempDir(), wrong, dns.ECDSAP256SHA256, true)
	if err != nil {
		t.Fatal(err)
	}

	srv, err := zoneserve.New(zoneserve.Options{Addr: "127.0.0.1:0", TSIG: map[string]string{tsigName: tsigSecret}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var kzones []knotlab.ZoneConf
	for origin, rrs := range map[string][]dns.RR{good: goodRRs, tampered: tamperedRRs, wrong: wrongRRs} {
		z, err := zone.FromRecords(origin, rrs)
		if err != nil {
			t.Fatalf("zone %s: %v", origin, err)
		}
		srv.SetZone(z)
	}
	for _, origin := range []string{good, tampered, wrong} {
		kzones = append(kzones, knotlab.ZoneConf{Origin: origin, Primaries: []netip.AddrPort{srv.Addr()}})
	}
	k, err := knotlab.Start(ctx, knotlab.Config{
		Dir: t.TempDir(), Listen: freeAddr(t), Zones: kzones,
		TSIGName: tsigName, TSIGAlgorithm: "hmac-sha256", TSIGSecret: tsigSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop(context.Background())
	knotAddr := netip.MustParseAddrPort(k.Addr())
	for _, origin := range []string{good, tampered, wrong} {
		waitKnot(ctx, t, k.Addr(), origin, 2026112401)
	}

	tamperedDS := tamperedKSK.DNSKEY.ToDS(dns.SHA256)
	opts := Options{
		Dir:    t.TempDir(),
		Listen: freeAddr(t),
		Zones: []Zone{
			{Origin: good, Upstreams: []netip.AddrPort{knotAddr}, Anchors: []dns.RR{goodKSK.DNSKEY}},
			// A DS anchor: the form a parent would publish.
			{Origin: tampered, Upstreams: []netip.AddrPort{knotAddr}, Anchors: []dns.RR{tamperedDS}},
			{Origin: wrong, Upstreams: []netip.AddrPort{knotAddr}, Anchors: []dns.RR{other.DNSKEY}},
		},
	}
	u, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := u.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if u.Running() {
			t.Error("unbound still running after Stop")
		}
		if err := portcheck.Free(u.Addr()); err != nil {
			t.Errorf("listen address still taken after Stop: %v", err)
		}
	}()
	if u.Pid() <= 0 {
		t.Errorf("Pid() = %d", u.Pid())
	}

	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		secure bool
		bogus  bool
		answer uint16 // a record type the answer must hold; 0: none
		reason string // substring of Result.Reason
	}{
		{name: "apex SOA validates", qname: good, qtype: dns.TypeSOA, rcode: dns.RcodeSuccess, secure: true, answer: dns.TypeSOA},
		{name: "DNSKEY set validates", qname: good, qtype: dns.TypeDNSKEY, rcode: dns.RcodeSuccess, secure: true, answer: dns.TypeDNSKEY},
		{name: "delegation DS validates", qname: "d000001." + good, qtype: dns.TypeDS, rcode: dns.RcodeSuccess, secure: true, answer: dns.TypeDS},
		{name: "unsigned delegation: no DS, proven by NSEC", qname: "d000002." + good, qtype: dns.TypeDS, rcode: dns.RcodeSuccess, secure: true},
		{name: "nonexistent name: NXDOMAIN proven by NSEC", qname: "nothing-here." + good, qtype: dns.TypeA, rcode: dns.RcodeNameError, secure: true},
		{name: "corrupted RRSIG is bogus", qname: tampered, qtype: dns.TypeSOA, rcode: dns.RcodeServerFailure, bogus: true, reason: "DNSSEC Bogus"},
		{name: "intact RRset in a partly corrupted zone is secure", qname: "d000003." + tampered, qtype: dns.TypeDS, rcode: dns.RcodeSuccess, secure: true, answer: dns.TypeDS},
		{name: "wrong trust anchor is bogus", qname: wrong, qtype: dns.TypeSOA, rcode: dns.RcodeServerFailure, bogus: true, reason: "DNSKEY"},
		{name: "wrong trust anchor: DS too", qname: "d000001." + wrong, qtype: dns.TypeDS, rcode: dns.RcodeServerFailure, bogus: true},
		// Refused locally: the resolver never looks beyond its zones.
		{name: "outside name refused", qname: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "another TLD refused", qname: "net.", qtype: dns.TypeSOA, rcode: dns.RcodeRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Validate(ctx, u.Addr(), tc.qname, tc.qtype)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rcode != tc.rcode || res.Secure != tc.secure || res.Bogus != tc.bogus {
				t.Fatalf("%s %s: got %s; want %s secure=%v bogus=%v\n%s", tc.qname, dns.TypeToString[tc.qtype],
					res, dns.RcodeToString[tc.rcode], tc.secure, tc.bogus, u.LogTail())
			}
			if tc.answer != 0 && !hasType(res.Answer, tc.answer) {
				t.Errorf("answer %v lacks %s", res.Answer, dns.TypeToString[tc.answer])
			}
			if tc.answer != 0 && !hasType(res.Answer, dns.TypeRRSIG) {
				t.Errorf("answer %v lacks the RRSIG (DO was set)", res.Answer)
			}
			if tc.reason != "" && !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q does not mention %q", res.Reason, tc.reason)
			}
		})
	}

	// The secure SOA is the one Knot serves: the resolver validated the
	// published zone, not something of its own.
	res, err := Validate(ctx, u.Addr(), good, dns.TypeSOA)
	if err != nil {
		t.Fatal(err)
	}
	if soa := firstSOA(res.Answer); soa == nil || soa.Serial != 2026112401 {
		t.Errorf("secure SOA %v, want serial 2026112401", res.Answer)
	}
}

func waitKnot(ctx context.Context, t *testing.T, addr, origin string, serial uint32) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		got, err := zonepull.QuerySerial(c, addr, origin)
		if err == nil && got == serial {
			return
		}
		select {
		case <-c.Done():
			t.Fatalf("Knot serves %s serial %d (%v), want %d", origin, got, err, serial)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func hasType(rrs []dns.RR, t uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}

func firstSOA(rrs []dns.RR) *dns.SOA {
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SOA); ok {
			return s
		}
	}
	return nil
}

// Start fails fast and cleanly when unbound cannot bind its address, and a
// resolver that is not there is an error from Validate, not a verdict.
func TestStartAndValidateFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ap := taken.LocalAddr().(*net.UDPAddr).AddrPort()
	_, ksk := signedZone(ctx, t, "lab.test.")
	o := Options{Dir: t.TempDir(), Listen: ap, Zones: []Zone{{Origin: "lab.test.", Upstreams: []netip.AddrPort{freeAddr(t)}, Anchors: []dns.RR{ksk.DNSKEY}}}}
	if s, err := Start(ctx, o); err == nil {
		s.Stop(ctx)
		t.Fatal("Start on a taken port succeeded")
	} else if !strings.Contains(err.Error(), "exited during start") {
		t.Errorf("Start on a taken port: %v; want it to say unbound exited", err)
	}

	c, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	if res, err := Validate(c, freeAddr(t).String(), "lab.test.", dns.TypeSOA); err == nil {
		t.Errorf("Validate against nothing: %s, want an error", res)
	}
}

func TestMain(m *testing.M) {
	if _, err := Find(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
