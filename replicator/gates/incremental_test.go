package gates

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonegen"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone"
)

// incDelegation is delegation i of the incremental tests' TLD; gen moves
// it to other name servers. Every 4th has in-zone glue, every 5th uses
// the glue of the delegation before it (sibling glue), every 3rd has DS.
func incDelegation(s *zonegen.Snapshot, i, gen int) zonegen.Delegation {
	label := fmt.Sprintf("d%04d", i)
	h := (i + gen*7) % 11
	d := zonegen.Delegation{Label: label, NS: []string{fmt.Sprintf("ns1.h%d.example.", h), fmt.Sprintf("ns2.h%d.example.", h)}}
	if i%4 == 0 {
		host := "ns1." + label + ".test."
		d.NS[0] = host
		s.Glue[host] = []netip.Addr{netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})}
	}
	if i%5 == 1 && i > 1 && (i-1)%4 == 0 {
		d.NS[1] = fmt.Sprintf("ns1.d%04d.test.", i-1)
	}
	if i%3 == 0 {
		d.DS = []zonegen.DS{{KeyTag: uint16(i), Algorithm: 13, DigestType: 2, Digest: fmt.Sprintf("%064x", i+gen)}}
	}
	return d
}

// signAs signs s as an incremental signer would after base: RRsets whose
// records did not change keep base's signatures.
func signAs(t *testing.T, s zonegen.Snapshot, serial uint32, base []dns.RR, keys []*zonesign.Key, opts zonesign.Options) []dns.RR {
	t.Helper()
	rrs, err := zonegen.Build(s, zonegen.Params{
		Origin: "test.", Serial: serial,
		ApexNS:   []string{"ns1.nic.test.", "a.nic.example."},
		ApexGlue: map[string][]netip.Addr{"ns1.nic.test.": {netip.MustParseAddr("192.0.2.1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := zonesign.Sign(context.Background(), rrs, "test.", keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	if base != nil {
		// the apex is signed anew: its SOA changes anyway
		zonesign.KeepSignatures(base, signed, "test.")
	}
	return signed
}

// findings is a report in a comparable form: per gate, its status and
// every finding's kind and name.
func findings(rep Report) []string {
	var out []string
	for _, r := range rep.Results {
		out = append(out, fmt.Sprintf("%s %s total=%d", r.Gate, r.Status, r.Total))
		for _, f := range r.Findings {
			out = append(out, fmt.Sprintf("  %s %s %s %s", r.Gate, f.Kind, f.Name, f.Type))
		}
	}
	return out
}

// An incremental check (Input.PreviousPassed) reaches the verdict a full
// check reaches, with the same findings, on random changes: good ones
// (delegations removed, added, moved, DS changed, as an incremental
// signer signs them) and broken ones (glue deleted, a signature dropped,
// an NSEC pointing wrong, data below a cut, a delegation that others use
// as sibling glue removed). The next version is built both by parsing and
// with zone.Apply from the difference, which must agree.
func TestIncrementalMatchesFull(t *testing.T) {
	for _, chain := range []struct {
		name string
		opts zonesign.Options
	}{
		{"NSEC", zonesign.Options{}},
		{"NSEC3", zonesign.Options{NSEC3: true}},
		{"NSEC3 opt-out", zonesign.Options{NSEC3: true, OptOut: true}},
	} {
		t.Run(chain.name, func(t *testing.T) { incrementalMatchesFull(t, chain.opts) })
	}
}

func incrementalMatchesFull(t *testing.T, chainOpts zonesign.Options) {
	const n = 160
	ksk, zsk := testKeys(t, dns.ECDSAP256SHA256)
	keys := []*zonesign.Key{ksk, zsk}
	now := time.Now()
	opts := chainOpts
	opts.Inception, opts.Expiration = now.Add(-time.Hour), now.Add(14*24*time.Hour)
	snap := zonegen.Snapshot{Glue: map[string][]netip.Addr{}}
	for i := range n {
		snap.Delegations = append(snap.Delegations, incDelegation(&snap, i, 0))
	}
	baseRRs := signAs(t, snap, 100, nil, keys, opts)
	base := mustZone(t, baseRRs)
	gates := Default(DefaultConfig())
	baseRep, baseIx := RunIndexed(context.Background(), gates, &Input{Zone: base, Now: now})
	for _, r := range baseRep.Results {
		if r.Status == StatusFail || r.Total > 0 {
			t.Fatalf("base version: %s %s %v", r.Gate, r.Status, r.Findings)
		}
	}

	r := rand.New(rand.NewPCG(5, 6))
	var passed, refused int
	proven := chainsProven.Load()
	for round := range 40 {
		next := zonegen.Snapshot{Glue: map[string][]netip.Addr{}}
		removed := map[int]bool{}
		churn := 100 // one in churn delegations removed, one in churn moved
		if round%9 == 8 {
			churn = 8 // too many: the budget refuses
		}
		for i := range n {
			switch r.IntN(churn) {
			case 0:
				removed[i] = true
				continue
			case 1:
				next.Delegations = append(next.Delegations, incDelegation(&next, i, 1))
				continue
			}
			next.Delegations = append(next.Delegations, incDelegation(&next, i, 0))
		}
		for i := n; i < n+r.IntN(4); i++ {
			next.Delegations = append(next.Delegations, incDelegation(&next, i, 0))
		}
		clock := round%7 == 6
		if clock {
			next = snap // only the serial moves; checked later (below)
		}
		// New signatures run later than the kept ones, as a signer's do.
		later := chainOpts
		later.Inception, later.Expiration = opts.Inception, now.Add(30*24*time.Hour)
		rrs := signAs(t, next, 101, baseRRs, keys, later)

		// Breakage, one kind per round in most rounds.
		what := "good"
		k := r.IntN(10)
		switch {
		case clock:
			k = -1
		case round%10 == 3:
			k = 6 // every chain kind meets this one
		}
		switch k {
		case 0: // glue deleted (glue is not signed)
			for i, rr := range rrs {
				if a, ok := rr.(*dns.A); ok && strings.HasPrefix(a.Hdr.Name, "ns1.d") && r.IntN(3) == 0 {
					rrs, what = slices.Delete(rrs, i, i+1), "glue "+a.Hdr.Name+" deleted"
					break
				}
			}
		case 1: // a signature dropped
			for i, rr := range rrs {
				if s, ok := rr.(*dns.RRSIG); ok && s.TypeCovered == dns.TypeDS && r.IntN(5) == 0 {
					rrs, what = slices.Delete(rrs, i, i+1), "RRSIG at "+s.Hdr.Name+" dropped"
					break
				}
			}
		case 2: // an NSEC or NSEC3 pointing past its successor
			for i, rr := range rrs {
				if x, ok := rr.(*dns.NSEC); ok && strings.HasPrefix(x.Hdr.Name, "d0") && r.IntN(8) == 0 {
					c := dns.Copy(x).(*dns.NSEC)
					c.NextDomain = "zzz.test."
					rrs[i], what = c, "NSEC at "+x.Hdr.Name+" skips"
					break
				}
				if x, ok := rr.(*dns.NSEC3); ok && r.IntN(8) == 0 {
					c := dns.Copy(x).(*dns.NSEC3)
					c.NextDomain = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
					rrs[i], what = c, "NSEC3 at "+x.Hdr.Name+" skips"
					break
				}
			}
		case 6: // an insecure delegation added outside the chain
			rr, _ := dns.NewRR(fmt.Sprintf("new%d.test. 86400 IN NS ns1.h1.example.", round))
			rrs, what = append(rrs, rr), "delegation added outside the chain"
		case 5: // an NSEC3 record gone
			for i, rr := range rrs {
				if x, ok := rr.(*dns.NSEC3); ok && r.IntN(8) == 0 {
					rrs, what = slices.Delete(rrs, i, i+1), "NSEC3 at "+x.Hdr.Name+" dropped"
					break
				}
			}
		case 3: // data below a delegation
			rr, _ := dns.NewRR(fmt.Sprintf("www.d%04d.test. 300 IN TXT \"occluded\"", 4*r.IntN(n/4)))
			rrs, what = append(rrs, rr), "occluded data"
		case 4: // a delegation whose glue another uses, removed whole
			i := 4 * (1 + r.IntN(n/4-1))
			if !removed[i] && !removed[i+1] {
				host := fmt.Sprintf("d%04d.test.", i)
				rrs = slices.DeleteFunc(rrs, func(rr dns.RR) bool {
					return strings.HasSuffix(rr.Header().Name, host) && rr.Header().Rrtype != dns.TypeNSEC &&
						(rr.Header().Rrtype != dns.TypeRRSIG || rr.(*dns.RRSIG).TypeCovered != dns.TypeNSEC)
				})
				what = host + " removed without re-signing"
			}
		}

		parsed, err := zone.FromRecords("test.", rrs)
		if err != nil {
			t.Fatalf("round %d (%s): %v", round, what, err)
		}
		del, add := zone.Diff(base, parsed)
		applied, err := zone.Apply(base, del, add)
		if err != nil {
			t.Fatalf("round %d (%s): Apply: %v", round, what, err)
		}
		if applied.Digest != parsed.Digest {
			dd, da := zone.Diff(parsed, applied)
			t.Logf("applied minus parsed: -%v +%v; names %d vs %d, records %d vs %d", dd, da, applied.Names(), parsed.Names(), applied.Len(), parsed.Len())
			for k := 0; k < min(applied.Names(), parsed.Names()); k++ {
				a, s1, e1 := applied.Name(k)
				b, s2, e2 := parsed.Name(k)
				if a != b || e1-s1 != e2-s2 {
					t.Logf("name %d: %q [%d,%d) vs %q [%d,%d)", k, a, s1, e1, b, s2, e2)
					break
				}
			}
			t.Fatalf("round %d (%s): Apply gives digest %s, the parse %s", round, what, applied.Digest, parsed.Digest)
		}
		at := now
		if clock {
			at = now.Add(12 * 24 * time.Hour) // the kept signatures expire soon: the clock moved, not those names
		}
		full := Run(context.Background(), gates, &Input{Zone: parsed, Previous: base, Published: base, Now: at, PreviousVerified: true})
		inc := Run(context.Background(), gates, &Input{Zone: applied, Previous: base, Published: base, Now: at,
			PreviousPassed: true, PreviousIndex: baseIx})
		if f, i := findings(full), findings(inc); !slices.Equal(f, i) || full.Pass != inc.Pass {
			t.Fatalf("round %d (%s): full check\n%s\nincremental\n%s", round, what, strings.Join(f, "\n"), strings.Join(i, "\n"))
		}
		if full.Pass {
			passed++
		} else {
			refused++
		}
	}
	if passed < 5 || refused < 5 {
		t.Errorf("%d rounds passed, %d refused: the test did not exercise both", passed, refused)
	}
	if p := chainsProven.Load() - proven; p < int64(passed)/2 {
		t.Errorf("the chain was proven incrementally in %d rounds of %d that passed: the incremental proof is given up on", p, passed)
	}
}
