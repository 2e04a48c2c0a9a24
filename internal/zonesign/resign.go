package zonesign

import (
	"fmt"
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
