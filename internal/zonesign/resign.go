package zonesign

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ResignSOA gives a signed zone a new SOA serial and replaces only the
// apex SOA's signatures: every other RRset and the NSEC/NSEC3 chain are
// unchanged by a serial bump. This is how a stored good version is
// re-published under a higher serial (a rollback) without re-signing the
// whole zone. Signatures are made with the zone-signing keys (or, with
// none, the KSKs of a CSK setup) of every algorithm present.
func ResignSOA(rrs []dns.RR, origin string, keys []*Key, serial uint32, now time.Time) ([]dns.RR, error) {
	origin = dns.CanonicalName(origin)
	zsks, ksks, err := signersByAlgorithm(origin, keys)
	if err != nil {
		return nil, err
	}
	signers := zsks
	if len(signers) == 0 {
		signers = ksks
	}
	var out []dns.RR
	var soa *dns.SOA
	var oldSig *dns.RRSIG
	for _, rr := range rrs {
		h := rr.Header()
		if strings.EqualFold(h.Name, origin) {
			switch v := rr.(type) {
			case *dns.SOA:
				soa = dns.Copy(v).(*dns.SOA)
				continue
			case *dns.RRSIG:
				if v.TypeCovered == dns.TypeSOA {
					oldSig = v
					continue
				}
			}
		}
		out = append(out, rr)
	}
	if soa == nil {
		return nil, fmt.Errorf("resign %s: no SOA at the apex", origin)
	}
	soa.Serial = serial
	out = append([]dns.RR{soa}, out...)
	// Keep the original signatures' lifetime policy: same length, starting
	// an hour ago (clock skew between sites and validators).
	life := 14 * 24 * time.Hour
	if oldSig != nil && oldSig.Expiration > oldSig.Inception {
		life = time.Duration(oldSig.Expiration-oldSig.Inception) * time.Second
	}
	inception := now.Add(-time.Hour)
	for _, k := range signers {
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Name: soa.Hdr.Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: soa.Hdr.Ttl},
			Algorithm:  k.DNSKEY.Algorithm,
			KeyTag:     k.Tag,
			SignerName: origin,
			Inception:  uint32(inception.Unix()),
			Expiration: uint32(inception.Add(life).Unix()),
		}
		if err := sig.Sign(k.Signer, []dns.RR{soa}); err != nil {
			return nil, fmt.Errorf("resign %s SOA with %v: %w", origin, k, err)
		}
		out = append(out, sig)
	}
	return out, nil
}

// KeepSignatures makes next look signed the way an incremental signer
// signs a new version: every RRset whose records (text, TTL included) are
// the same as in base keeps base's RRSIGs in place of next's fresh ones,
// except at the owner names in resign. It returns how many it replaced.
// The benchmarks and tests use it to build realistic next versions, where
// only what changed carries new signatures.
func KeepSignatures(base, next []dns.RR, resign ...string) int {
	type set struct {
		data []string
		sigs []int
	}
	skip := map[string]bool{}
	for _, n := range resign {
		skip[strings.ToLower(dns.Fqdn(n))] = true
	}
	index := func(rrs []dns.RR) map[string]*set {
		m := make(map[string]*set, len(rrs)/2)
		get := func(name string, t uint16) *set {
			k := strings.ToLower(name) + "|" + dns.TypeToString[t]
			if m[k] == nil {
				m[k] = &set{}
			}
			return m[k]
		}
		for i, rr := range rrs {
			if sig, ok := rr.(*dns.RRSIG); ok {
				s := get(sig.Hdr.Name, sig.TypeCovered)
				s.sigs = append(s.sigs, i)
				continue
			}
			s := get(rr.Header().Name, rr.Header().Rrtype)
			s.data = append(s.data, rr.String())
		}
		return m
	}
	old, cur := index(base), index(next)
	replaced := 0
	for k, s := range cur {
		o := old[k]
		if o == nil || len(o.sigs) != len(s.sigs) || len(s.sigs) == 0 || skip[k[:strings.LastIndexByte(k, '|')]] {
			continue
		}
		slices.Sort(o.data)
		slices.Sort(s.data)
		if !slices.Equal(o.data, s.data) {
			continue
		}
		for i, si := range s.sigs {
			next[si] = base[o.sigs[i]]
			replaced++
		}
	}
	return replaced
}
