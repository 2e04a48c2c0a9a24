package gates

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/miekg/dns"
)

// Signature checking on the wire form. The zone keeps its records packed
// (zone.Zone.Raw), and the data an RRSIG signs (RFC 4034 §3.1.8.1) is
// wire format too: the RRSIG RDATA without its signature, then the RRset
// in canonical form and order. Building it straight from the packed
// records costs no allocation, where decoding every record and letting
// miekg pack it again allocated a 4 KB buffer per signature (5 GB on a
// million-delegation zone, and the garbage collector's time with it).
// Anything this path does not cover exactly (another algorithm, a
// wildcard expansion, a type whose RDATA names are canonicalised in ways
// not handled here) goes to miekg's code as before.

// rrsigWire is an RRSIG read from its packed form.
type rrsigWire struct {
	class      uint16
	covered    uint16
	alg        uint8
	labels     uint8
	origTTL    uint32
	expiration uint32
	inception  uint32
	keyTag     uint16
	signer     []byte // wire name, as stored (case kept)
	signature  []byte
	fixed      []byte // the RDATA up to the signer name
}

// parseRRSIG reads an owner-less packed RRSIG (zone.Zone.Raw).
func parseRRSIG(raw []byte) (rrsigWire, bool) {
	if len(raw) < 10+18+1 || binary.BigEndian.Uint16(raw) != dns.TypeRRSIG {
		return rrsigWire{}, false
	}
	rd := raw[10:]
	s := rrsigWire{
		class:      binary.BigEndian.Uint16(raw[2:]),
		covered:    binary.BigEndian.Uint16(rd),
		alg:        rd[2],
		labels:     rd[3],
		origTTL:    binary.BigEndian.Uint32(rd[4:]),
		expiration: binary.BigEndian.Uint32(rd[8:]),
		inception:  binary.BigEndian.Uint32(rd[12:]),
		keyTag:     binary.BigEndian.Uint16(rd[16:]),
		fixed:      rd[:18],
	}
	end, ok := nameEnd(rd, 18)
	if !ok {
		return rrsigWire{}, false
	}
	s.signer, s.signature = rd[18:end], rd[end:]
	return s, true
}

// nameEnd returns the offset just past the uncompressed wire name at off.
func nameEnd(b []byte, off int) (int, bool) {
	for off < len(b) {
		l := int(b[off])
		off++
		switch {
		case l == 0:
			return off, true
		case l > 63:
			return 0, false // a compression pointer or worse: not ours
		}
		off += l
	}
	return 0, false
}

// appendLowerName appends wire name n lower-cased (ASCII, label bytes
// only) to dst.
func appendLowerName(dst, n []byte) []byte {
	for i := 0; i < len(n); {
		l := int(n[i])
		dst = append(dst, n[i])
		i++
		for _, c := range n[i:min(i+l, len(n))] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		i += l
	}
	return dst
}

// wireLabels counts the labels of a wire name, the root not counted, and
// reports whether the first is "*".
func wireLabels(n []byte) (count int, wild bool) {
	for i := 0; i < len(n) && n[i] != 0; i += int(n[i]) + 1 {
		if count == 0 && n[i] == 1 && i+1 < len(n) && n[i+1] == '*' {
			wild = true
		}
		count++
	}
	return count, wild
}

// canonicalRdata appends the canonical form (RFC 4034 §6.2, as miekg
// applies it) of RDATA rd of type t to dst; ok is false for types this
// path leaves to miekg.
func canonicalRdata(dst []byte, t uint16, rd []byte) ([]byte, bool) {
	name := func(dst []byte, at int) ([]byte, int, bool) {
		end, ok := nameEnd(rd, at)
		if !ok {
			return dst, 0, false
		}
		return appendLowerName(dst, rd[at:end]), end, true
	}
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeDS, dns.TypeCDS, dns.TypeDNSKEY, dns.TypeCDNSKEY,
		dns.TypeTXT, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeCAA,
		dns.TypeTLSA, dns.TypeSSHFP, dns.TypeZONEMD, dns.TypeHINFO:
		return append(dst, rd...), true
	case dns.TypeNS, dns.TypeCNAME, dns.TypePTR, dns.TypeDNAME:
		dst, end, ok := name(dst, 0)
		return dst, ok && end == len(rd)
	case dns.TypeMX:
		if len(rd) < 3 {
			return dst, false
		}
		dst = append(dst, rd[:2]...)
		dst, end, ok := name(dst, 2)
		return dst, ok && end == len(rd)
	case dns.TypeSRV:
		if len(rd) < 7 {
			return dst, false
		}
		dst = append(dst, rd[:6]...)
		dst, end, ok := name(dst, 6)
		return dst, ok && end == len(rd)
	case dns.TypeSOA:
		dst, end, ok := name(dst, 0)
		if !ok {
			return dst, false
		}
		dst, end, ok = name(dst, end)
		if !ok || len(rd)-end != 20 {
			return dst, false
		}
		return append(dst, rd[end:]...), true
	}
	return dst, false
}

// wireScratch is one worker's buffers, reused from one signature to the
// next.
type wireScratch struct {
	owner []byte
	rdata []byte
	spans [][2]int // each record's canonical RDATA in rdata
	buf   []byte
	sum   [sha256.Size]byte
}

// wireSignedHash is the SHA-256 digest of what sig signs over the RRset
// recs (packed records of owner, a NameKey), or ok false when this path
// does not apply and miekg's code must decide. The conditions mirror
// canVerifyFast: ECDSAP256SHA256, a signature whose label count is the
// owner's (no wildcard expansion), an RRset of one type and class that
// the signature covers.
func wireSignedHash(ix *Index, owner string, recs []int32, sig rrsigWire, x *wireScratch) ([]byte, bool) {
	if sig.alg != dns.ECDSAP256SHA256 || sig.keyTag == 0 || sig.origTTL == 0 || len(sig.signer) == 0 || len(recs) == 0 {
		return nil, false
	}
	var err error
	x.owner = x.owner[:cap(x.owner)]
	if len(x.owner) < 256 {
		x.owner = make([]byte, 256)
	}
	n, err := dns.PackDomainName(owner, x.owner, 0, nil, false)
	if err != nil {
		return nil, false
	}
	x.owner = x.owner[:n]
	labels, wild := wireLabels(x.owner)
	if wild {
		labels--
	}
	if int(sig.labels) != labels {
		return nil, false
	}
	x.rdata, x.spans = x.rdata[:0], x.spans[:0]
	z := ix.Zone()
	for _, ri := range recs {
		raw := z.Raw(int(ri))
		if binary.BigEndian.Uint16(raw) != sig.covered || binary.BigEndian.Uint16(raw[2:]) != sig.class {
			return nil, false
		}
		from := len(x.rdata)
		var ok bool
		if x.rdata, ok = canonicalRdata(x.rdata, sig.covered, raw[10:]); !ok || len(x.rdata)-from > 0xffff {
			return nil, false
		}
		x.spans = append(x.spans, [2]int{from, len(x.rdata)})
	}
	rd := x.rdata
	slices.SortFunc(x.spans, func(a, b [2]int) int { return bytes.Compare(rd[a[0]:a[1]], rd[b[0]:b[1]]) })

	b := append(x.buf[:0], sig.fixed...)
	b = appendLowerName(b, sig.signer)
	var hdr [10]byte
	binary.BigEndian.PutUint16(hdr[0:], sig.covered)
	binary.BigEndian.PutUint16(hdr[2:], sig.class)
	binary.BigEndian.PutUint32(hdr[4:], sig.origTTL)
	for i, sp := range x.spans {
		r := rd[sp[0]:sp[1]]
		if i > 0 {
			if p := x.spans[i-1]; bytes.Equal(rd[p[0]:p[1]], r) {
				continue // a duplicate: an RRset is a set
			}
		}
		b = append(b, x.owner...)
		binary.BigEndian.PutUint16(hdr[8:], uint16(len(r)))
		b = append(b, hdr[:]...)
		b = append(b, r...)
	}
	x.buf = b
	x.sum = sha256.Sum256(b)
	return x.sum[:], true
}
