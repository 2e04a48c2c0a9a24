package zonesign

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/dnsname"
)

// nameKey is the canonical-order key of a name (see dnsname.Key).
func nameKey(name string) (string, error) { return dnsname.Key(name) }

// CompareNames compares two domain names in canonical order (RFC 4034
// §6.1): negative if a sorts before b, zero if equal ignoring case,
// positive otherwise.
func CompareNames(a, b string) (int, error) { return dnsname.Compare(a, b) }

// sortable is one RR with the keys it is ordered by, computed once.
type sortable struct {
	rr    dns.RR
	name  string // nameKey of the owner
	rank  int    // type order within a name, see typeRank
	rdata []byte // canonical RDATA wire form, RFC 4034 §6.3
}

// typeRank orders the RRsets of one name: SOA first, as zone files
// conventionally start with it (and the generator reads the serial from
// the first record), then by type number, each RRSIG directly after the
// RRset it covers.
func typeRank(rr dns.RR) int {
	t := rr.Header().Rrtype
	sig := 0
	if s, ok := rr.(*dns.RRSIG); ok {
		t = s.TypeCovered
		sig = 1
	}
	if t == dns.TypeSOA {
		return sig
	}
	return 2 + int(t)*2 + sig
}

// canonicalSort orders rrs as RFC 4034 §6.1 (names) and §6.3 (RDATA within
// an RRset) describe, with typeRank between them. It is deterministic, so
// two signings of the same data differ only in their signatures.
func canonicalSort(rrs []dns.RR) error {
	keys := make(map[string]string, len(rrs)/2)
	items := make([]sortable, len(rrs))
	buf := make([]byte, dns.MaxMsgSize)
	for i, rr := range rrs {
		h := rr.Header()
		k, ok := keys[h.Name]
		if !ok {
			var err error
			if k, err = nameKey(h.Name); err != nil {
				return err
			}
			keys[h.Name] = k
		}
		rd, err := rdataWire(rr, buf)
		if err != nil {
			return err
		}
		items[i] = sortable{rr: rr, name: k, rank: typeRank(rr), rdata: rd}
	}
	slices.SortFunc(items, func(a, b sortable) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return bytes.Compare(a.rdata, b.rdata)
	})
	for i := range items {
		rrs[i] = items[i].rr
	}
	return nil
}

// rdataWire returns a copy of rr's RDATA in wire form, with the domain
// names inside it lower-cased for the types RFC 4034 §6.2 lists (as
// miekg/dns does when it signs).
func rdataWire(rr dns.RR, buf []byte) ([]byte, error) {
	c := dns.Copy(rr)
	switch x := c.(type) {
	case *dns.NS:
		x.Ns = dns.CanonicalName(x.Ns)
	case *dns.CNAME:
		x.Target = dns.CanonicalName(x.Target)
	case *dns.SOA:
		x.Ns = dns.CanonicalName(x.Ns)
		x.Mbox = dns.CanonicalName(x.Mbox)
	case *dns.PTR:
		x.Ptr = dns.CanonicalName(x.Ptr)
	case *dns.MX:
		x.Mx = dns.CanonicalName(x.Mx)
	case *dns.SRV:
		x.Target = dns.CanonicalName(x.Target)
	case *dns.DNAME:
		x.Target = dns.CanonicalName(x.Target)
	}
	end, err := dns.PackRR(c, buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("pack %s/%s: %w", rr.Header().Name, dns.TypeToString[rr.Header().Rrtype], err)
	}
	// The header is owner name + type, class, TTL, rdlength (10 octets).
	start := end - int(c.Header().Rdlength)
	return slices.Clone(buf[start:end]), nil
}
