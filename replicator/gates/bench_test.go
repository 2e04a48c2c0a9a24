package gates

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonegen"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone"
)

// benchZone builds a registry-shaped TLD of n delegations with
// internal/zonegen (every fourth with in-domain glue, every third with a
// DS) and signs it with internal/zonesign, as the lab's generator does.
// It returns the signed zone and the previous version (same data, serial
// one lower).
func benchZone(b *testing.B, n int, opts zonesign.Options) (cand, prev *zone.Zone, zsk *zonesign.Key) {
	b.Helper()
	snap := zonegen.Snapshot{Glue: map[string][]netip.Addr{}}
	for i := range n {
		label := fmt.Sprintf("d%07d", i)
		d := zonegen.Delegation{Label: label, NS: []string{fmt.Sprintf("ns1.hosting%d.example.", i%50), fmt.Sprintf("ns2.hosting%d.example.", i%50)}}
		if i%4 == 0 {
			host := "ns1." + label + ".test."
			d.NS[0] = host
			snap.Glue[host] = []netip.Addr{netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})}
		}
		if i%3 == 0 {
			d.DS = []zonegen.DS{{KeyTag: uint16(i), Algorithm: 13, DigestType: 2, Digest: fmt.Sprintf("%064x", i)}}
		}
		snap.Delegations = append(snap.Delegations, d)
	}
	rrs, err := zonegen.Build(snap, zonegen.Params{
		Origin: "test.", Serial: 2026011001,
		ApexNS:   []string{"ns1.nic.test.", "a.nic.example."},
		ApexGlue: map[string][]netip.Addr{"ns1.nic.test.": {netip.MustParseAddr("192.0.2.1")}},
	})
	if err != nil {
		b.Fatal(err)
	}
	ksk, zsk := testKeys(b, dns.ECDSAP256SHA256)
	now := time.Now()
	opts.Inception, opts.Expiration = now.Add(-time.Hour), now.Add(14*24*time.Hour)
	signed, err := zonesign.Sign(context.Background(), rrs, "test.", []*zonesign.Key{ksk, zsk}, opts)
	if err != nil {
		b.Fatal(err)
	}
	if cand, err = zone.FromRecords("test.", signed); err != nil {
		b.Fatal(err)
	}
	older := cand.RRs()
	soa := dns.Copy(cand.SOA()).(*dns.SOA)
	soa.Serial--
	older[0] = soa
	if prev, err = zone.FromRecords("test.", older); err != nil {
		b.Fatal(err)
	}
	return cand, prev, zsk
}

// BenchmarkGates100k runs every gate on a signed zone of 100,000
// delegations (about 600,000 records), the previous version alongside.
// The target is a 1,000,000-delegation zone checked faster than BIND's
// dnssec-verify; signature verification dominates and runs on every CPU.
func BenchmarkGates100k(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts zonesign.Options
	}{{"NSEC", zonesign.Options{}}, {"NSEC3-optout", zonesign.Options{NSEC3: true, OptOut: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 100_000
			cand, prev, _ := benchZone(b, n, bc.opts)
			gates := Default(DefaultConfig())
			in := &Input{Zone: cand, Previous: prev, Published: prev, Now: time.Now(), ExpectedDelegations: ptr(n)}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rep := Run(context.Background(), gates, in)
				if !rep.Pass {
					b.Fatalf("benchmark zone refused: %v", rep.Failed())
				}
			}
			b.ReportMetric(float64(cand.Len()), "records")
		})
	}
}

// changeDS is cand's next version as an incremental signer makes it: the
// DS of every k-th delegation with a DS gets a new digest and a new
// signature (changes of them), the SOA a new serial and signature, and
// everything else keeps its records and signatures.
func changeDS(b *testing.B, cand *zone.Zone, zsk *zonesign.Key, changes int) *zone.Zone {
	b.Helper()
	ds := cand.Counts["DS"]
	every := max(ds/changes, 1)
	rrs := make([]dns.RR, 0, cand.Len())
	sigOf := map[string]*dns.RRSIG{} // owner -> the DS RRSIG to redo
	seen, changed := 0, 0
	for _, rr := range cand.All() {
		switch r := rr.(type) {
		case *dns.SOA:
			c := dns.Copy(r).(*dns.SOA)
			c.Serial++
			rr = c
		case *dns.DS:
			if seen%every == 0 && changed < changes {
				c := dns.Copy(r).(*dns.DS)
				c.Digest = fmt.Sprintf("%064X", changed+1<<40)
				rr = c
				sigOf[r.Hdr.Name] = nil
				changed++
			}
			seen++
		}
		rrs = append(rrs, rr)
	}
	dsAt := map[string][]dns.RR{}
	for _, rr := range rrs {
		if _, redo := sigOf[rr.Header().Name]; redo && rr.Header().Rrtype == dns.TypeDS {
			dsAt[rr.Header().Name] = append(dsAt[rr.Header().Name], rr)
		}
	}
	for i, rr := range rrs {
		sig, ok := rr.(*dns.RRSIG)
		if !ok {
			continue
		}
		var set []dns.RR
		switch _, redo := sigOf[sig.Hdr.Name]; {
		case sig.TypeCovered == dns.TypeSOA:
			set = []dns.RR{rrs[0]}
		case sig.TypeCovered == dns.TypeDS && redo:
			set = dsAt[sig.Hdr.Name]
		default:
			continue
		}
		if sig.KeyTag != zsk.Tag {
			continue
		}
		c := dns.Copy(sig).(*dns.RRSIG)
		if err := c.Sign(zsk.Signer, set); err != nil {
			b.Fatal(err)
		}
		rrs[i] = c
	}
	next, err := zone.FromRecords(cand.Origin, rrs)
	if err != nil {
		b.Fatal(err)
	}
	return next
}

// BenchmarkDNSSEC100k compares the dnssec gate on a version that differs
// from a verified previous one by 1,000 delegations (new DS), checked in
// full and incrementally (Input.PreviousVerified). The incremental check
// verifies about a thousand signatures instead of 130,000.
func BenchmarkDNSSEC100k(b *testing.B) {
	const n, changes = 100_000, 1000
	base, _, zsk := benchZone(b, n, zonesign.Options{})
	next := changeDS(b, base, zsk, changes)
	gates := []Gate{dnssecGate{DefaultConfig()}}
	for _, bc := range []struct {
		name        string
		incremental bool
	}{{"full", false}, {"incremental", true}} {
		b.Run(bc.name, func(b *testing.B) {
			in := &Input{Zone: next, Previous: base, Published: base, Now: time.Now(), PreviousVerified: bc.incremental}
			b.ReportAllocs()
			for b.Loop() {
				if rep := Run(context.Background(), gates, in); !rep.Pass {
					b.Fatalf("benchmark zone refused: %+v", rep.Results)
				}
			}
			b.ReportMetric(float64(next.Counts["RRSIG"]), "signatures")
		})
	}
}

// BenchmarkGatesIncremental100k is every gate on the same change, full
// and incremental: what the agent pays per new version.
func BenchmarkGatesIncremental100k(b *testing.B) {
	const n, changes = 100_000, 1000
	base, _, zsk := benchZone(b, n, zonesign.Options{})
	next := changeDS(b, base, zsk, changes)
	gates := Default(DefaultConfig())
	for _, bc := range []struct {
		name        string
		incremental bool
	}{{"full", false}, {"incremental", true}} {
		b.Run(bc.name, func(b *testing.B) {
			in := &Input{Zone: next, Previous: base, Published: base, Now: time.Now(), PreviousVerified: bc.incremental, ExpectedDelegations: ptr(n)}
			for b.Loop() {
				if rep := Run(context.Background(), gates, in); !rep.Pass {
					b.Fatalf("benchmark zone refused: %v", rep.Failed())
				}
			}
		})
	}
}
