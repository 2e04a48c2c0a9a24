package gates

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone"
)

// testKeys makes a KSK and a ZSK of alg in a temporary directory.
func testKeys(t testing.TB, alg uint8) (ksk, zsk *zonesign.Key) {
	t.Helper()
	dir := t.TempDir()
	var err error
	if ksk, err = zonesign.GenerateKey(dir, "test.", alg, true); err != nil {
		t.Fatal(err)
	}
	if zsk, err = zonesign.GenerateKey(dir, "test.", alg, false); err != nil {
		t.Fatal(err)
	}
	return ksk, zsk
}

// signSmall signs testdata/small.zone with keys, valid around fixedNow.
func signSmall(t testing.TB, keys []*zonesign.Key, opts zonesign.Options) []dns.RR {
	t.Helper()
	base := load(t, "small.zone", "test.")
	if opts.Inception.IsZero() {
		opts.Inception, opts.Expiration = sigInception, sigExpiration
	}
	rrs, err := zonesign.Sign(context.Background(), base.RRs(), "test.", keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rrs
}

// drop removes the records at owner of type typ, and the RRSIGs covering them.
func drop(rrs []dns.RR, owner string, typ uint16) []dns.RR {
	return slices.DeleteFunc(slices.Clone(rrs), func(rr dns.RR) bool {
		h := rr.Header()
		if h.Name != owner {
			return false
		}
		s, ok := rr.(*dns.RRSIG)
		return h.Rrtype == typ || ok && s.TypeCovered == typ
	})
}

// dropSigs removes only the RRSIGs over owner/typ made with key tag (0: all).
func dropSigs(rrs []dns.RR, owner string, typ uint16, tag uint16) []dns.RR {
	return slices.DeleteFunc(slices.Clone(rrs), func(rr dns.RR) bool {
		s, ok := rr.(*dns.RRSIG)
		return ok && s.Hdr.Name == owner && s.TypeCovered == typ && (tag == 0 || s.KeyTag == tag)
	})
}

// edit replaces the first record matching pick with change(copy of it).
func edit(t testing.TB, rrs []dns.RR, pick func(dns.RR) bool, change func(dns.RR)) []dns.RR {
	t.Helper()
	out := slices.Clone(rrs)
	for i, rr := range out {
		if pick(rr) {
			c := dns.Copy(rr)
			change(c)
			out[i] = c
			return out
		}
	}
	t.Fatal("edit: no record matched")
	return nil
}

// signWith adds an RRSIG over owner/typ made with key.
func signWith(t testing.TB, rrs []dns.RR, owner string, typ uint16, key *zonesign.Key) []dns.RR {
	t.Helper()
	var set []dns.RR
	for _, rr := range rrs {
		if rr.Header().Name == owner && rr.Header().Rrtype == typ {
			set = append(set, rr)
		}
	}
	sig := &dns.RRSIG{
		Hdr:       dns.RR_Header{Name: owner, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: set[0].Header().Ttl},
		Algorithm: key.DNSKEY.Algorithm, KeyTag: key.Tag, SignerName: "test.",
		Inception: uint32(sigInception.Unix()), Expiration: uint32(sigExpiration.Unix()),
	}
	if err := sig.Sign(key.Signer, set); err != nil {
		t.Fatal(err)
	}
	return append(slices.Clone(rrs), sig)
}

func isType(owner string, typ uint16) func(dns.RR) bool {
	return func(rr dns.RR) bool { return rr.Header().Name == owner && rr.Header().Rrtype == typ }
}

func nsec3Owner(t testing.TB, name string) string {
	h, err := nsec3Hash(name, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h + ".test."
}

func TestDNSSECGate(t *testing.T) {
	ksk, zsk := testKeys(t, dns.ECDSAP256SHA256)
	ksk2, zsk2 := testKeys(t, dns.ED25519)
	keys := []*zonesign.Key{ksk, zsk}
	nsec := signSmall(t, keys, zonesign.Options{})
	nsec3 := signSmall(t, keys, zonesign.Options{NSEC3: true})
	optout := signSmall(t, keys, zonesign.Options{NSEC3: true, OptOut: true})
	twoAlgs := signSmall(t, []*zonesign.Key{ksk, zsk, ksk2, zsk2}, zonesign.Options{})
	zskOnly := signSmall(t, []*zonesign.Key{zsk}, zonesign.Options{})
	unsigned := load(t, "small.zone", "test.").RRs()

	tests := []struct {
		name   string
		rrs    []dns.RR
		prev   []dns.RR
		now    time.Time
		status string
		kinds  []string
		names  []string
	}{
		{name: "NSEC", rrs: nsec, status: StatusPass},
		{name: "NSEC3", rrs: nsec3, status: StatusPass},
		{name: "NSEC3 opt-out", rrs: optout, status: StatusPass},
		{name: "two algorithms", rrs: twoAlgs, status: StatusPass},
		{name: "unsigned zone", rrs: unsigned, status: StatusSkip},
		{name: "the previous version was signed", rrs: unsigned, prev: nsec, status: StatusFail,
			kinds: []string{"signing-lost"}, names: []string{"test."}},
		{name: "signatures left, DNSKEY gone", rrs: drop(nsec, "test.", dns.TypeDNSKEY), status: StatusFail,
			kinds: []string{"no-dnskey"}},
		{name: "no validation time", rrs: nsec, now: time.Time{}, status: StatusFail},
		{name: "an RRset without signature", rrs: dropSigs(nsec, "nic.test.", dns.TypeMX, 0), status: StatusFail,
			kinds: []string{"unsigned"}, names: []string{"nic.test."}},
		{name: "signed by a key not in the zone", rrs: edit(t, nsec,
			func(rr dns.RR) bool {
				s, ok := rr.(*dns.RRSIG)
				return ok && s.Hdr.Name == "nic.test." && s.TypeCovered == dns.TypeA
			},
			func(rr dns.RR) { rr.(*dns.RRSIG).KeyTag++ }),
			status: StatusFail, kinds: []string{"unknown-key"}, names: []string{"nic.test."}},
		{name: "a signature covering nothing", rrs: edit(t, nsec,
			func(rr dns.RR) bool {
				s, ok := rr.(*dns.RRSIG)
				return ok && s.Hdr.Name == "nic.test." && s.TypeCovered == dns.TypeA
			},
			func(rr dns.RR) { rr.(*dns.RRSIG).TypeCovered = dns.TypeAAAA }),
			status: StatusFail, kinds: []string{"orphan-sig", "unsigned"}, names: []string{"nic.test."}},
		{name: "checked before inception", rrs: nsec, now: sigInception.Add(-time.Hour), status: StatusFail,
			kinds: []string{"not-yet-valid"}},
		{name: "expiring inside the minimum", rrs: nsec, now: sigExpiration.Add(-71 * time.Hour), status: StatusFail,
			kinds: []string{"expiring"}},
		{name: "just enough validity left", rrs: nsec, now: sigExpiration.Add(-72 * time.Hour), status: StatusPass},
		{name: "NSEC pointing past a name", rrs: edit(t, nsec, isType("kumo.test.", dns.TypeNSEC),
			func(rr dns.RR) { rr.(*dns.NSEC).NextDomain = "mizu.test." }),
			status: StatusFail, kinds: []string{"bad-signature", "nsec-next"}, names: []string{"kumo.test."}},
		{name: "NSEC bitmap hiding the DS", rrs: resign(t, edit(t, nsec, isType("kumo.test.", dns.TypeNSEC),
			func(rr dns.RR) { rr.(*dns.NSEC).TypeBitMap = []uint16{dns.TypeNS, dns.TypeRRSIG, dns.TypeNSEC} }), "kumo.test.", dns.TypeNSEC, zsk),
			status: StatusFail, kinds: []string{"nsec-bitmap"}, names: []string{"kumo.test."}},
		{name: "opt-out does not excuse a secure delegation", rrs: relink(t, drop(optout, nsec3Owner(t, "kumo.test."), dns.TypeNSEC3), zsk),
			status: StatusFail, kinds: []string{"nsec3-missing"}, names: []string{"kumo.test."}},
		{name: "no opt-out: an insecure delegation must be there", rrs: relink(t, drop(nsec3, nsec3Owner(t, "sora.test."), dns.TypeNSEC3), zsk),
			status: StatusFail, kinds: []string{"nsec3-missing"}, names: []string{"sora.test."}},
		{name: "an empty non-terminal needs its NSEC3", rrs: relink(t, drop(nsec3, nsec3Owner(t, "ent.test."), dns.TypeNSEC3), zsk),
			status: StatusFail, kinds: []string{"nsec3-missing"}, names: []string{"ent.test."}},
		{name: "NSEC3PARAM that matches no chain", rrs: resign(t, edit(t, nsec3, isType("test.", dns.TypeNSEC3PARAM),
			func(rr dns.RR) { rr.(*dns.NSEC3PARAM).Iterations = 5 }), "test.", dns.TypeNSEC3PARAM, zsk),
			status: StatusFail, kinds: []string{"nsec3-empty", "nsec3-param-mismatch"}},
		{name: "no key with the SEP bit", rrs: zskOnly, status: StatusFail, kinds: []string{"no-ksk"}},
		{name: "DNSKEY signed by the ZSK only", rrs: signWith(t, dropSigs(nsec, "test.", dns.TypeDNSKEY, ksk.Tag), "test.", dns.TypeDNSKEY, zsk),
			status: StatusFail, kinds: []string{"dnskey-not-ksk-signed"}, names: []string{"test."}},
		{name: "one algorithm missing from an RRset", rrs: dropSigs(twoAlgs, "nic.test.", dns.TypeA, zsk2.Tag), status: StatusFail,
			kinds: []string{"missing-algorithm"}, names: []string{"nic.test."}},
		{name: "a signature over glue", rrs: signWith(t, nsec, "ns1.kumo.test.", dns.TypeA, zsk), status: StatusFail,
			kinds: []string{"non-authoritative-sig"}, names: []string{"ns1.kumo.test."}},
		{name: "a signature over the delegation NS set", rrs: signWith(t, nsec, "kumo.test.", dns.TypeNS, zsk), status: StatusFail,
			kinds: []string{"non-authoritative-sig"}, names: []string{"kumo.test."}},
		{name: "no chain at all", rrs: noChain(nsec), status: StatusFail, kinds: []string{"no-chain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() && !strings.Contains(tt.name, "no validation time") {
				now = fixedNow
			}
			in := &Input{Zone: mustZone(t, tt.rrs), Now: now}
			if tt.prev != nil {
				in.Previous = mustZone(t, tt.prev)
			}
			r := runOne(t, dnssecGate{DefaultConfig()}, in)
			checkResult(t, r, tt.status, tt.kinds, tt.names)
		})
	}
}

func mustZone(t testing.TB, rrs []dns.RR) *zone.Zone {
	t.Helper()
	z, err := zone.FromRecords("test.", rrs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// resign replaces the signatures over owner/typ with a fresh one by key.
func resign(t testing.TB, rrs []dns.RR, owner string, typ uint16, key *zonesign.Key) []dns.RR {
	t.Helper()
	return signWith(t, dropSigs(rrs, owner, typ, 0), owner, typ, key)
}

// relink closes an NSEC3 chain after a record was dropped, so the only
// fault left is the missing name (re-signing the edited record).
func relink(t testing.TB, rrs []dns.RR, key *zonesign.Key) []dns.RR {
	t.Helper()
	var chain []*dns.NSEC3
	for _, rr := range rrs {
		if n, ok := rr.(*dns.NSEC3); ok {
			chain = append(chain, n)
		}
	}
	slices.SortFunc(chain, func(a, b *dns.NSEC3) int { return strings.Compare(a.Hdr.Name, b.Hdr.Name) })
	for i, n := range chain {
		next := strings.ToUpper(firstLabel(chain[(i+1)%len(chain)].Hdr.Name))
		if !strings.EqualFold(n.NextDomain, next) {
			owner := n.Hdr.Name
			rrs = edit(t, rrs, isType(owner, dns.TypeNSEC3), func(rr dns.RR) { rr.(*dns.NSEC3).NextDomain = next })
			return resign(t, rrs, owner, dns.TypeNSEC3, key)
		}
	}
	t.Fatal("relink: chain was not broken")
	return nil
}

// noChain drops every NSEC record and its signatures.
func noChain(rrs []dns.RR) []dns.RR {
	return slices.DeleteFunc(slices.Clone(rrs), func(rr dns.RR) bool {
		s, ok := rr.(*dns.RRSIG)
		return rr.Header().Rrtype == dns.TypeNSEC || ok && s.TypeCovered == dns.TypeNSEC
	})
}

// The incremental check (Input.PreviousVerified) gives the verdict of the
// full one on every kind of change, while verifying only what changed.
func TestDNSSECIncremental(t *testing.T) {
	ksk, zsk := testKeys(t, dns.ECDSAP256SHA256)
	ksk2, zsk2 := testKeys(t, dns.ED25519)
	keys := []*zonesign.Key{ksk, zsk}
	nsec := signSmall(t, keys, zonesign.Options{})
	prev := mustZone(t, nsec)
	sigs := prev.Counts["RRSIG"]
	isSig := func(owner string, covered uint16) func(dns.RR) bool {
		return func(rr dns.RR) bool {
			s, ok := rr.(*dns.RRSIG)
			return ok && s.Hdr.Name == owner && s.TypeCovered == covered
		}
	}
	// newMX changes nic.test.'s MX and signs it anew: one new signature.
	newMX := resign(t, edit(t, nsec, isType("nic.test.", dns.TypeMX), func(rr dns.RR) { rr.(*dns.MX).Preference = 20 }),
		"nic.test.", dns.TypeMX, zsk)

	tests := []struct {
		name   string
		rrs    []dns.RR
		now    time.Time
		status string
		kinds  []string
		fresh  int // signatures verified now; -1: no reuse at all
	}{
		{name: "same records", rrs: nsec, status: StatusPass, fresh: 0},
		{name: "one RRset changed and re-signed", rrs: newMX, status: StatusPass, fresh: 1},
		{name: "a changed RRset under its old signature", rrs: edit(t, nsec, isType("nic.test.", dns.TypeMX),
			func(rr dns.RR) { rr.(*dns.MX).Preference = 20 }),
			status: StatusFail, kinds: []string{"bad-signature"}, fresh: 1},
		{name: "a signature's bytes tampered", rrs: edit(t, nsec, isSig("nic.test.", dns.TypeA),
			func(rr dns.RR) {
				s := rr.(*dns.RRSIG)
				s.Signature = strings.ToUpper(s.Signature[:8]) + strings.ToLower(s.Signature[8:])
			}),
			status: StatusFail, kinds: []string{"bad-signature"}, fresh: 1},
		{name: "NSEC changed under its old signature", rrs: edit(t, nsec, isType("kumo.test.", dns.TypeNSEC),
			func(rr dns.RR) { rr.(*dns.NSEC).NextDomain = "mizu.test." }),
			status: StatusFail, kinds: []string{"bad-signature", "nsec-next"}, fresh: 1},
		{name: "unchanged signatures expiring", rrs: nsec, now: sigExpiration.Add(-71 * time.Hour),
			status: StatusFail, kinds: []string{"expiring"}, fresh: 0},
		{name: "an RRset lost its signature", rrs: dropSigs(nsec, "nic.test.", dns.TypeMX, 0),
			status: StatusFail, kinds: []string{"unsigned"}, fresh: 0},
		{name: "new DNSKEY set: everything verified again", rrs: signSmall(t, []*zonesign.Key{ksk, zsk, ksk2, zsk2}, zonesign.Options{}),
			status: StatusPass, fresh: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = fixedNow
			}
			full := runOne(t, dnssecGate{DefaultConfig()}, &Input{Zone: mustZone(t, tt.rrs), Previous: prev, Now: now})
			inc := runOne(t, dnssecGate{DefaultConfig()}, &Input{Zone: mustZone(t, tt.rrs), Previous: prev, PreviousVerified: true, Now: now})
			checkResult(t, full, tt.status, tt.kinds, nil)
			checkResult(t, inc, tt.status, tt.kinds, nil)
			if full.Total != inc.Total || !slices.Equal(kinds(full), kinds(inc)) {
				t.Errorf("incremental: %d findings %v, full: %d %v", inc.Total, kinds(inc), full.Total, kinds(full))
			}
			if tt.status != StatusPass {
				return
			}
			if tt.fresh < 0 {
				if strings.Contains(inc.Reason, "unchanged") {
					t.Errorf("reason %q: nothing may be reused under another DNSKEY set", inc.Reason)
				}
				return
			}
			want := fmt.Sprintf("(%d unchanged since verified serial %d, %d verified now)", sigs-tt.fresh, prev.Serial, tt.fresh)
			if !strings.Contains(inc.Reason, want) {
				t.Errorf("reason %q, want it to say %q", inc.Reason, want)
			}
		})
	}
}
