package gates

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone"
)

// FuzzGates feeds arbitrary zone text through zone.Parse and every gate,
// against a fixed previous version. No input may panic a gate, and a
// report that fails must say why: a finding or a reason on every failing
// gate.
func FuzzGates(f *testing.F) {
	// Small seeds only: the fuzzer minimises every new input it finds
	// interesting, and minimising a 30 kB zone takes minutes.
	files, _ := filepath.Glob(filepath.Join("testdata", "zonemd", "*.zone"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, opts := range []zonesign.Options{{}, {NSEC3: true, OptOut: true}} {
		f.Add([]byte(tinySigned(f, opts)))
	}
	for _, s := range []string{
		"test. 3600 IN SOA a. b. 1 2 3 4 5\n",
		"test. 3600 IN SOA a. b. 2 2 3 4 5\ntest. 3600 IN NS ns.test.\nx.test. 3600 IN CNAME y.test.\nx.test. 3600 IN A 192.0.2.1\n",
		"$ORIGIN test\ntest. 3600 IN SOA a. b. 2 2 3 4 5\nkumo 3600 IN NS ns.kumo\n",
		"test. 3600 IN SOA a. b. 2 2 3 4 5\ntest. 3600 IN DNSKEY 257 3 13 AAAA\ntest. 3600 IN NSEC3PARAM 1 0 0 -\n",
		"test. 3600 IN SOA a. b. 2 2 3 4 5\ntest. 3600 IN ZONEMD 2 1 1 00\ntest. 3600 IN RRSIG SOA 13 1 3600 20260301000000 20260101000000 1 test. AAAA\n",
	} {
		f.Add([]byte(s))
	}
	small, err := os.ReadFile(filepath.Join("testdata", "small.zone"))
	if err != nil {
		f.Fatal(err)
	}
	prev, err := zone.Parse(bytes.NewReader(small), "small.zone", "test.")
	if err != nil {
		f.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.RequiredNames = []string{"nic.test.", "*.wild.test."}
	gates := Default(cfg)

	f.Fuzz(func(t *testing.T, data []byte) {
		z, err := zone.Parse(bytes.NewReader(data), "fuzz.zone", "test.")
		if err != nil {
			return
		}
		rep := Run(context.Background(), gates, &Input{
			Zone: z, Previous: prev, Published: prev, Now: fixedNow,
			ExpectedDelegations: ptr(21), RemovedByRegistry: map[string]bool{"kumo.test.": true},
		})
		if len(rep.Results) != len(gates) {
			t.Fatalf("%d results for %d gates", len(rep.Results), len(gates))
		}
		failed := false
		for _, r := range rep.Results {
			switch r.Status {
			case StatusFail:
				failed = true
				if r.Total == 0 && r.Reason == "" {
					t.Errorf("%s fails with neither finding nor reason", r.Gate)
				}
			case StatusPass:
				if r.Total != 0 {
					t.Errorf("%s passes with %d findings", r.Gate, r.Total)
				}
			case StatusSkip:
				if r.Reason == "" {
					t.Errorf("%s skips without a reason", r.Gate)
				}
			default:
				t.Errorf("%s: unknown status %q", r.Gate, r.Status)
			}
			if r.Total < len(r.Findings) {
				t.Errorf("%s: total %d < %d listed", r.Gate, r.Total, len(r.Findings))
			}
			for _, fd := range r.Findings {
				if fd.Gate != r.Gate || fd.Kind == "" || fd.Msg == "" {
					t.Errorf("%s: malformed finding %+v", r.Gate, fd)
				}
			}
		}
		if rep.Pass == failed {
			t.Errorf("Pass = %v but a gate failed = %v", rep.Pass, failed)
		}
	})
}

// FuzzSerial checks the serial gate's arithmetic against RFC 1982 §3.2
// written out independently, through the gate itself.
func FuzzSerial(f *testing.F) {
	for _, s := range [][2]uint32{{1, 2}, {2, 1}, {0, 1 << 31}, {1 << 31, 0}, {4294967295, 0}, {7, 7}, {0, 4294967295}, {100, 100 + 1<<31 - 1}} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	mk := func(t *testing.T, serial uint32, ns string) *zone.Zone {
		soa := &dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
			Ns: "a.example.", Mbox: "b.example.", Serial: serial, Refresh: 1, Retry: 1, Expire: 1, Minttl: 1}
		n := &dns.NS{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 3600}, Ns: ns}
		z, err := zone.FromRecords("test.", []dns.RR{soa, n})
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	g := serialGate{DefaultConfig()}
	f.Fuzz(func(t *testing.T, prev, cand uint32, sameContent bool) {
		ns := "ns1.example."
		if !sameContent {
			ns = "ns2.example."
		}
		in := &Input{Zone: mk(t, cand, ns), Previous: mk(t, prev, "ns1.example."), Now: fixedNow}
		r := runOne(t, g, in)

		// RFC 1982 §3.2, in 64-bit arithmetic: s1 < s2 iff
		// (i1 < i2 and i2-i1 < 2^31) or (i1 > i2 and i1-i2 > 2^31).
		i1, i2 := uint64(prev), uint64(cand)
		less := i1 < i2 && i2-i1 < 1<<31 || i1 > i2 && i1-i2 > 1<<31
		undefined := i1 != i2 && (i2-i1 == 1<<31 || i1-i2 == 1<<31)
		if zone.SerialLess(prev, cand) != less {
			t.Fatalf("SerialLess(%d, %d) = %v, RFC 1982 says %v", prev, cand, !less, less)
		}
		if less && zone.SerialLess(cand, prev) {
			t.Fatalf("%d and %d are each before the other", prev, cand)
		}
		equalAndSame := prev == cand && sameContent
		wantPass := less || equalAndSame
		if (r.Status == StatusPass) != wantPass {
			t.Fatalf("prev %d cand %d same %v: %s (%s), want pass=%v", prev, cand, sameContent, r.Status, r.Reason, wantPass)
		}
		if r.Status == StatusFail && (r.Total != 1 || r.Reason == "") {
			t.Fatalf("a refused serial must have one finding and a reason: %+v", r)
		}
		v := SerialVerdict(prev, cand, sameContent)
		if (v == SerialUndefined) != undefined {
			t.Fatalf("SerialVerdict(%d, %d) = %s, undefined per RFC 1982: %v", prev, cand, v, undefined)
		}
	})
}

// tinySigned is a signed zone of three delegations, as zone file text.
func tinySigned(f *testing.F, opts zonesign.Options) string {
	ksk, zsk := testKeys(f, dns.ED25519)
	z := parse(f, "test.",
		"test. 3600 IN SOA ns1.nic.test. hostmaster.nic.test. 2026011001 1800 900 604800 3600",
		"test. 86400 IN NS ns1.nic.test.",
		"ns1.nic.test. 86400 IN A 192.0.2.1",
		"kumo.test. 86400 IN NS ns1.kumo.test.",
		"kumo.test. 3600 IN DS 11111 13 2 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
		"ns1.kumo.test. 86400 IN A 198.51.100.1",
		"sora.test. 86400 IN NS ns1.kumo.test.",
		"deep.ent.test. 86400 IN NS ns.example.net.")
	opts.Inception, opts.Expiration = sigInception, sigExpiration
	rrs, err := zonesign.Sign(context.Background(), z.RRs(), "test.", []*zonesign.Key{ksk, zsk}, opts)
	if err != nil {
		f.Fatal(err)
	}
	var b strings.Builder
	if err := zonesign.WriteZone(&b, rrs); err != nil {
		f.Fatal(err)
	}
	return b.String()
}
