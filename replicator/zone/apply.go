package zone

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ErrDeltaMismatch is returned (wrapped) by Apply when a record to delete
// is not in the version the difference is applied to: the difference was
// made against another version, and applying it would build a version
// nobody published.
var ErrDeltaMismatch = errors.New("difference does not apply to this version")

// Apply returns the version prev becomes with the records del removed and
// the records add added: an IXFR difference (RFC 1995), the SOA among
// them. The result shares prev's storage for every name the difference
// does not touch: only the touched names are packed, sorted and hashed
// again, so on a million-delegation zone a difference of a thousand
// delegations applies in a few tens of milliseconds, not the seconds of a
// parse. Records are compared for deletion as RRsets are, ignoring TTL
// and the case of names; a record to delete that is not there fails with
// ErrDeltaMismatch and a record added twice is kept once. prev is not
// modified.
func Apply(prev *Zone, del, add []dns.RR) (*Zone, error) {
	type change struct {
		del, add []dns.RR
	}
	changes := map[string]*change{}
	at := func(rr dns.RR) *change {
		k := NameKey(dns.Fqdn(rr.Header().Name))
		c := changes[k]
		if c == nil {
			c = &change{}
			changes[k] = c
		}
		return c
	}
	for _, rr := range del {
		if rr != nil {
			c := at(rr)
			c.del = append(c.del, rr)
		}
	}
	for _, rr := range add {
		if rr != nil {
			c := at(rr)
			c.add = append(c.add, rr)
		}
	}
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// The touched names' records as they become, packed into one new
	// arena, each name's sorted and without duplicates.
	b := newPieceBuilder(64 << 10)
	type touched struct {
		key        string
		start, end int // in b's piece
		soa        int // position of the SOA in b's piece, or -1
		hash       [sha256.Size]byte
		gone       bool // no records left
	}
	var done []touched
	counts := make(map[string]int, len(prev.Counts))
	for t, n := range prev.Counts {
		counts[t] = n
	}
	origin := NameKey(prev.Origin)
	dead := 0 // bytes of prev's records the touched names replace
	for _, k := range keys {
		c := changes[k]
		var rrs []dns.RR
		if pk, ok := prev.FindName(k); ok {
			_, s, e := prev.Name(pk)
			if k == origin {
				rrs = append(rrs, prev.RR(0))
				dead += len(prev.Raw(0))
			}
			for i := s; i < e; i++ {
				rrs = append(rrs, prev.RR(i))
				dead += len(prev.Raw(i))
			}
		}
		for _, rr := range rrs {
			counts[typeName(rr.Header().Rrtype)]--
		}
		for _, d := range c.del {
			i := slices.IndexFunc(rrs, func(rr dns.RR) bool { return sameData(rr, d) })
			if i < 0 {
				return nil, fmt.Errorf("zone %s serial %d: %w: no %s to delete", prev.Origin, prev.Serial, ErrDeltaMismatch, d)
			}
			rrs = slices.Delete(rrs, i, i+1)
		}
		for _, rr := range c.add {
			// As it will read back from storage: the text (and so the
			// digest) must be the stored record's, whatever spelling
			// the difference used (a hash in lower case, say).
			n, err := roundTrip(rr, k)
			if err != nil {
				return nil, fmt.Errorf("zone %s: %w", prev.Origin, err)
			}
			rrs = append(rrs, n)
		}
		if len(rrs) == 0 {
			done = append(done, touched{key: k, gone: true})
			continue
		}
		type line struct {
			text string
			rr   dns.RR
		}
		lines := make([]line, 0, len(rrs))
		for _, rr := range rrs {
			lines = append(lines, line{CanonicalText(rr), rr})
		}
		slices.SortStableFunc(lines, func(a, b line) int { return strings.Compare(a.text, b.text) })
		t := touched{key: k, start: b.p.len(), soa: -1}
		var text []byte
		for i, l := range lines {
			if i > 0 && l.text == lines[i-1].text {
				continue
			}
			if l.rr.Header().Rrtype == dns.TypeSOA {
				if k != origin {
					return nil, fmt.Errorf("zone %s: %w: owner %s", prev.Origin, ErrSOANotAtOrigin, l.rr.Header().Name)
				}
				if t.soa >= 0 {
					return nil, fmt.Errorf("zone %s: %w after the difference", prev.Origin, ErrSeveralSOA)
				}
				t.soa = b.p.len()
			}
			if err := b.add(l.rr, 0); err != nil {
				return nil, fmt.Errorf("zone %s: %w", prev.Origin, err)
			}
			counts[typeName(l.rr.Header().Rrtype)]++
			text = append(text, l.text...)
			text = append(text, '\n')
		}
		t.end = b.p.len()
		t.hash = sha256.Sum256(text)
		done = append(done, t)
	}
	p := b.done()
	arena := len(prev.arenas)

	z := &Zone{Origin: prev.Origin, Counts: map[string]int{}}
	for t, n := range counts {
		if n > 0 {
			z.Counts[t] = n
		}
	}
	z.arenas = append(slices.Clip(prev.arenas), p.arena)
	z.refs = make([]uint64, 1, len(prev.refs)+p.len())
	z.refs[0] = prev.refs[0]
	z.names = make([]string, 0, len(prev.names)+len(done))
	z.nameStart = make([]int32, 0, len(prev.names)+len(done)+1)
	z.nameHash = make([][sha256.Size]byte, 0, len(prev.names)+len(done))
	soaFound := false
	// Merge prev's names (sorted) with the touched ones (sorted).
	copyRange := func(from, to int) {
		// prev's names [from, to), none touched
		if from >= to {
			return
		}
		shift := int32(len(z.refs)) - prev.nameStart[from]
		z.refs = append(z.refs, prev.refs[prev.nameStart[from]:prev.nameStart[to]]...)
		for k := from; k < to; k++ {
			z.names = append(z.names, prev.names[k])
			z.nameStart = append(z.nameStart, prev.nameStart[k]+shift)
		}
		z.nameHash = append(z.nameHash, prev.nameHash[from:to]...)
	}
	pk := 0
	for _, t := range done {
		next, found := slices.BinarySearch(prev.names[pk:], t.key)
		next += pk
		copyRange(pk, next)
		pk = next
		if found {
			pk++ // replaced (or removed)
		}
		if t.gone {
			continue
		}
		z.names = append(z.names, t.key)
		z.nameStart = append(z.nameStart, int32(len(z.refs)))
		z.nameHash = append(z.nameHash, t.hash)
		for i := t.start; i < t.end; i++ {
			ref := uint64(arena)<<32 | uint64(p.offs[i])
			if i == t.soa {
				z.refs[0], soaFound = ref, true
				continue
			}
			z.refs = append(z.refs, ref)
		}
	}
	copyRange(pk, len(prev.names))
	z.nameStart = append(z.nameStart, int32(len(z.refs)))
	if _, apexTouched := changes[origin]; apexTouched && !soaFound {
		return nil, fmt.Errorf("zone %s: %w after the difference", prev.Origin, ErrNoSOA)
	}
	z.Digest = digestOf(z.nameHash)
	z.wire = prev.wire - dead + len(p.arena)
	z.compactIfSparse()
	var ok bool
	if z.apex, ok = z.FindName(origin); !ok {
		return nil, fmt.Errorf("zone %s: %w after the difference", prev.Origin, ErrNoSOA)
	}
	soa, isSOA := z.RR(0).(*dns.SOA)
	if !isSOA {
		return nil, fmt.Errorf("zone %s: %w after the difference", prev.Origin, ErrNoSOA)
	}
	z.Serial = soa.Serial
	return z, nil
}

// sameData reports whether a and b are the same record for an IXFR
// deletion: TTL and owner case aside, the same RDATA on the wire (so a
// hex digest printed in either case is one digest), or equal as miekg
// compares records.
func sameData(a, b dns.RR) bool {
	if dns.IsDuplicate(a, b) {
		return true
	}
	ha, hb := a.Header(), b.Header()
	if ha.Rrtype != hb.Rrtype || ha.Class != hb.Class || !strings.EqualFold(ha.Name, hb.Name) {
		return false
	}
	x, err1 := appendOwnerless(nil, a)
	y, err2 := appendOwnerless(nil, b)
	// RDLENGTH and RDATA: past type, class and TTL
	return err1 == nil && err2 == nil && string(x[8:]) == string(y[8:])
}

// Diff is the difference that takes a to b, as IXFR carries it (the SOAs
// among it when they differ): Apply(a, Diff(a, b)) holds the records of
// b. Names are compared by their per-name hashes first, so only the names
// that differ are decoded.
func Diff(a, b *Zone) (del, add []dns.RR) {
	raws := func(z *Zone, k int) map[string]int {
		_, s, e := z.Name(k)
		m := make(map[string]int, e-s+1)
		if k == z.apex {
			m[string(z.Raw(0))] = 0
		}
		for i := s; i < e; i++ {
			m[string(z.Raw(i))] = i
		}
		return m
	}
	both := func(ka, kb int) {
		ra, rb := raws(a, ka), raws(b, kb)
		for r, i := range ra {
			if _, ok := rb[r]; !ok {
				del = append(del, a.RR(i))
			}
		}
		for r, i := range rb {
			if _, ok := ra[r]; !ok {
				add = append(add, b.RR(i))
			}
		}
	}
	only := func(z *Zone, k int, out *[]dns.RR) {
		for _, i := range raws(z, k) {
			*out = append(*out, z.RR(i))
		}
	}
	i, j := 0, 0
	for i < len(a.names) || j < len(b.names) {
		switch {
		case j == len(b.names) || i < len(a.names) && a.names[i] < b.names[j]:
			only(a, i, &del)
			i++
		case i == len(a.names) || b.names[j] < a.names[i]:
			only(b, j, &add)
			j++
		default:
			if a.nameHash[i] != b.nameHash[j] {
				both(i, j)
			}
			i++
			j++
		}
	}
	return del, add
}

// compactFloor: below this, arenas are not worth copying.
var compactFloor = 16 << 20

// compactIfSparse copies the records into new arenas when the ones they
// are in hold more than twice their size: versions built by Apply share
// their predecessors' arenas, and an agent applying differences for weeks
// would otherwise keep every record it ever replaced.
func (z *Zone) compactIfSparse() {
	total := 0
	for _, a := range z.arenas {
		total += len(a)
	}
	if total <= 2*z.wire || total < compactFloor {
		return
	}
	const chunk = 256 << 20
	var arenas [][]byte
	cur := make([]byte, 0, min(z.wire, chunk)+maxRRWire)
	refs := make([]uint64, len(z.refs))
	for i := range z.refs {
		r := z.Raw(i)
		if len(cur)+len(r) > cap(cur) {
			arenas = append(arenas, cur)
			cur = make([]byte, 0, min(z.wire, chunk)+maxRRWire)
		}
		refs[i] = uint64(len(arenas))<<32 | uint64(len(cur))
		cur = append(cur, r...)
	}
	z.arenas, z.refs = append(arenas, cur), refs
}

// roundTrip is rr as the zone stores and returns it: packed, owner-less,
// and decoded under the owner name key.
func roundTrip(rr dns.RR, key string) (dns.RR, error) {
	b, err := appendOwnerless(nil, rr)
	if err != nil {
		return nil, err
	}
	return unpackAt(b, 0, key)
}
