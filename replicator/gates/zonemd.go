package gates

// The zonemd gate checks the zone's own digest (RFC 8976) when its
// producer put one at the apex. It traces to INCIDENTS.md §4 (RIPE NCC
// 2017): a signature or a summary that says "this is fine" is worth only
// as much as the check that the data is what the producer meant to send.
// A ZONEMD that does not match means the zone was changed or damaged
// after it was digested (a truncated transfer, a bad merge, a hand edit),
// and such a zone is not published. Compute is exported so regdr can add
// a ZONEMD to a version it stores and check it again on the other site.

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

type zonemdGate struct{ c Config }

func (zonemdGate) Name() string { return GateZONEMD }

func (g zonemdGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	set := ix.Apex().Set(dns.TypeZONEMD)
	if set == nil {
		return skip(GateZONEMD, "no ZONEMD record at the apex")
	}
	col := newCollector(GateZONEMD, g.c, ix)
	origin := ix.Origin()
	serial := ix.Zone().Serial

	type want struct {
		rec    int32
		digest []byte
	}
	byHash := map[uint8][]want{}
	var hashes []uint8
	for _, i := range set.Records() {
		r, ok := ix.RR(i).(*dns.ZONEMD)
		if !ok {
			continue
		}
		if r.Scheme != dns.ZoneMDSchemeSimple || (r.Hash != dns.ZoneMDHashAlgSHA384 && r.Hash != dns.ZoneMDHashAlgSHA512) {
			continue // RFC 8976 §4: unsupported ones are ignored
		}
		if r.Serial != serial {
			col.at(nil, i, "zonemd-serial", origin, "ZONEMD",
				"ZONEMD serial %d does not match the SOA serial %d: the digest is of another version", r.Serial, serial)
			continue
		}
		d, err := hex.DecodeString(r.Digest)
		if err != nil || len(d) != hashSize(r.Hash) {
			col.at(nil, i, "zonemd-length", origin, "ZONEMD",
				"ZONEMD %s digest is %d octets, want %d", hashName(r.Hash), len(r.Digest)/2, hashSize(r.Hash))
			continue
		}
		if len(byHash[r.Hash]) == 0 {
			hashes = append(hashes, r.Hash)
		}
		byHash[r.Hash] = append(byHash[r.Hash], want{i, d})
	}
	for _, h := range hashes {
		if w := byHash[h]; len(w) > 1 {
			col.at(nil, w[1].rec, "zonemd-duplicate", origin, "ZONEMD",
				"%d ZONEMD records with scheme SIMPLE and %s: RFC 8976 §4 makes that a verification failure", len(w), hashName(h))
		}
	}
	if len(hashes) == 0 && col.total == 0 {
		return skip(GateZONEMD, "no ZONEMD with a supported scheme and hash (SIMPLE with SHA-384 or SHA-512)")
	}
	if len(hashes) > 0 {
		if err := ctx.Err(); err != nil {
			return cancelled(GateZONEMD, err)
		}
		sums, err := computeDigests(ix.Zone(), hashes)
		if err != nil {
			col.at(nil, set.Records()[0], "zonemd-compute", origin, "ZONEMD", "cannot compute the digest: %v", err)
		}
		for k, h := range hashes {
			if err != nil {
				break
			}
			for _, w := range byHash[h] {
				if !bytes.Equal(w.digest, sums[k]) {
					col.at(nil, w.rec, "zonemd-mismatch", origin, "ZONEMD",
						"ZONEMD %s digest does not match the zone (computed %x)", hashName(h), sums[k])
				}
			}
		}
	}
	names := make([]string, len(hashes))
	for i, h := range hashes {
		names[i] = hashName(h)
	}
	res := col.result(fmt.Sprintf("ZONEMD %s matches the zone", strings.Join(names, " and ")))
	if res.Status == StatusFail {
		res.Reason = col.list[0].Msg
	}
	return res
}

func hashSize(h uint8) int {
	if h == dns.ZoneMDHashAlgSHA512 {
		return sha512.Size
	}
	return sha512.Size384
}

func hashName(h uint8) string {
	switch h {
	case dns.ZoneMDHashAlgSHA384:
		return "SHA-384"
	case dns.ZoneMDHashAlgSHA512:
		return "SHA-512"
	}
	return fmt.Sprintf("hash %d", h)
}

// Compute returns the RFC 8976 digest of z with the SIMPLE scheme and hash
// algorithm alg (dns.ZoneMDHashAlgSHA384 or dns.ZoneMDHashAlgSHA512). It
// covers every record at or below the origin except the apex ZONEMD
// RRset and the RRSIGs covering it, each once, in canonical form and
// order, so a ZONEMD can be computed before it is added and checked after.
func Compute(z *zone.Zone, alg uint8) ([]byte, error) {
	if alg != dns.ZoneMDHashAlgSHA384 && alg != dns.ZoneMDHashAlgSHA512 {
		return nil, fmt.Errorf("zonemd %s: unsupported hash algorithm %d (want 1 SHA-384 or 2 SHA-512)", z.Origin, alg)
	}
	sums, err := computeDigests(z, []uint8{alg})
	if err != nil {
		return nil, err
	}
	return sums[0], nil
}

// canonRR is one record in canonical wire form, inside an arena.
type canonRR struct {
	key        string // canonicalKey of the owner
	class, typ uint16
	off, rdata int // arena[off:end] is the RR, arena[rdata:end] its RDATA
	end        int
}

// computeDigests digests z once per algorithm in algs, sorting once.
func computeDigests(z *zone.Zone, algs []uint8) ([][]byte, error) {
	origin := z.Origin
	items := make([]canonRR, 0, z.Len())
	arena := make([]byte, 0, 64*z.Len())
	buf := make([]byte, 0, dns.MaxMsgSize)
	msg := new(dns.Msg)
	one := make([]dns.RR, 1)
	lastName, lastKey := "", ""
	for _, rr := range z.All() {
		if rr == nil {
			continue
		}
		h := rr.Header()
		name := lowerName(h.Name)
		if !under(name, origin) {
			continue // RFC 8976 §3.3.1: out-of-zone data is not digested
		}
		if name == origin {
			if h.Rrtype == dns.TypeZONEMD {
				continue
			}
			if s, ok := rr.(*dns.RRSIG); ok && s.TypeCovered == dns.TypeZONEMD {
				continue
			}
		}
		if name != lastName {
			k, err := canonicalKey(name)
			if err != nil {
				return nil, fmt.Errorf("zonemd %s: %w", origin, err)
			}
			lastName, lastKey = name, k
		}
		// Packed through a Msg: PackRR would write Rdlength into the
		// shared, immutable record.
		one[0] = canonicalRDATA(rr)
		msg.Answer = one
		wire, err := msg.PackBuffer(buf[:0])
		if err != nil {
			return nil, fmt.Errorf("zonemd %s: pack %s/%s: %w", origin, h.Name, typeName(h.Rrtype), err)
		}
		wire = wire[12:] // the message header
		nameEnd := 0
		for wire[nameEnd] != 0 {
			nameEnd += 1 + int(wire[nameEnd])
		}
		nameEnd++
		lowerASCII(wire[:nameEnd]) // length octets are < 64, never letters
		off := len(arena)
		arena = append(arena, wire...)
		items = append(items, canonRR{
			key: lastKey, class: h.Class, typ: h.Rrtype,
			off: off, rdata: off + nameEnd + 10, end: len(arena),
		})
	}
	slices.SortFunc(items, func(a, b canonRR) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		if a.class != b.class {
			return int(a.class) - int(b.class)
		}
		if a.typ != b.typ {
			return int(a.typ) - int(b.typ)
		}
		return bytes.Compare(arena[a.rdata:a.end], arena[b.rdata:b.end])
	})
	hs := make([]hash.Hash, len(algs))
	for i, a := range algs {
		if a == dns.ZoneMDHashAlgSHA512 {
			hs[i] = sha512.New()
		} else {
			hs[i] = sha512.New384()
		}
	}
	for i, it := range items {
		w := arena[it.off:it.end]
		// RFC 8976 §3.3.1.1: duplicate RRs are digested once.
		if i > 0 {
			p := items[i-1]
			if p.key == it.key && bytes.Equal(arena[p.off:p.end], w) {
				continue
			}
		}
		for _, h := range hs {
			h.Write(w)
		}
	}
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = h.Sum(nil)
	}
	return out, nil
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// canonicalRDATA returns rr with the domain names in its RDATA lower-cased
// for the types RFC 4034 §6.2 lists (less HINFO, RFC 6840 §5.1), the same
// list miekg/dns uses when it signs. rr itself is returned, not a copy,
// when nothing needs lowering: nearly always in a generated zone.
func canonicalRDATA(rr dns.RR) dns.RR {
	upper := false
	for _, p := range rdataNames(rr) {
		upper = upper || hasUpper(*p)
	}
	if !upper {
		return rr
	}
	c := dns.Copy(rr)
	for _, p := range rdataNames(c) {
		b := []byte(*p)
		lowerASCII(b)
		*p = string(b)
	}
	return c
}

// rdataNames points at the domain names inside rr's RDATA that canonical
// form lower-cases.
func rdataNames(rr dns.RR) []*string {
	switch x := rr.(type) {
	case *dns.NS:
		return []*string{&x.Ns}
	case *dns.MD:
		return []*string{&x.Md}
	case *dns.MF:
		return []*string{&x.Mf}
	case *dns.CNAME:
		return []*string{&x.Target}
	case *dns.SOA:
		return []*string{&x.Ns, &x.Mbox}
	case *dns.MB:
		return []*string{&x.Mb}
	case *dns.MG:
		return []*string{&x.Mg}
	case *dns.MR:
		return []*string{&x.Mr}
	case *dns.PTR:
		return []*string{&x.Ptr}
	case *dns.MINFO:
		return []*string{&x.Rmail, &x.Email}
	case *dns.MX:
		return []*string{&x.Mx}
	case *dns.RP:
		return []*string{&x.Mbox, &x.Txt}
	case *dns.AFSDB:
		return []*string{&x.Hostname}
	case *dns.RT:
		return []*string{&x.Host}
	case *dns.SIG:
		return []*string{&x.SignerName}
	case *dns.PX:
		return []*string{&x.Map822, &x.Mapx400}
	case *dns.NAPTR:
		return []*string{&x.Replacement}
	case *dns.KX:
		return []*string{&x.Exchanger}
	case *dns.SRV:
		return []*string{&x.Target}
	case *dns.DNAME:
		return []*string{&x.Target}
	}
	return nil
}
