package gates

// Chain checks of the dnssec gate: the NSEC chain (RFC 4034 §4, RFC 4035
// §2.3) and the NSEC3 chain (RFC 5155 §7.1). A chain with a hole gives
// no valid proof of non-existence for the names in the hole, and one whose
// type bitmap disagrees with the data proves the wrong thing ("no DS here"
// for a secure delegation); both break resolution only for some names,
// which is exactly the kind of damage nobody notices for days (RIPE 2012).

import (
	"context"
	"crypto/sha1"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// checkChains checks the NSEC chain, the NSEC3 chain, or both when both
// are present (a zone part way through a transition must keep each one it
// publishes complete).
func checkChains(ctx context.Context, ix *Index, col *collector) error {
	z := ix.Zone()
	hasParam := ix.Apex().Has(dns.TypeNSEC3PARAM)
	if z.Counts["NSEC"] == 0 && z.Counts["NSEC3"] == 0 && !hasParam {
		col.at(nil, 0, "no-chain", ix.Origin(), "NSEC",
			"signed zone without NSEC or NSEC3 records: no negative answer can be proved")
		return nil
	}
	if z.Counts["NSEC"] > 0 || !hasParam && z.Counts["NSEC3"] == 0 {
		if err := checkNSEC(ctx, ix, col); err != nil {
			return err
		}
	}
	if hasParam || z.Counts["NSEC3"] > 0 {
		return checkNSEC3(ctx, ix, col)
	}
	return nil
}

func chainKind(ix *Index) string {
	z := ix.Zone()
	switch {
	case z.Counts["NSEC"] > 0 && z.Counts["NSEC3"] > 0:
		return "NSEC and NSEC3"
	case z.Counts["NSEC3"] > 0:
		return "NSEC3"
	}
	return "NSEC"
}

// chainNames are the names a chain must cover: every name with data that
// is not occluded, delegation points included; never NSEC3 owners.
func chainNames(ix *Index) []*Node {
	out := make([]*Node, 0, len(ix.Nodes()))
	for _, n := range ix.Nodes() {
		if !n.Below && !n.NSEC3Owner && len(n.Sets) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// expectedTypes is the type bitmap an NSEC or NSEC3 record at n must
// carry: the types present, at a delegation point only NS, DS and NSEC
// (the rest is glue, not the zone's to prove), plus RRSIG when signed.
func expectedTypes(n *Node, buf []uint16) []uint16 {
	buf = buf[:0]
	for _, s := range n.Sets {
		if n.Cut && s.Type != dns.TypeNS && s.Type != dns.TypeDS && s.Type != dns.TypeNSEC {
			continue
		}
		buf = append(buf, s.Type)
	}
	if n.hasSigs() {
		buf = append(buf, dns.TypeRRSIG)
	}
	slices.Sort(buf)
	return buf
}

// sameTypes compares a bitmap with the expected (sorted) types as sets.
func sameTypes(bitmap, want []uint16) bool {
	n := 0
	for i, t := range bitmap {
		if slices.Contains(bitmap[:i], t) {
			continue // a parsed bitmap has no duplicates; be safe anyway
		}
		if !slices.Contains(want, t) {
			return false
		}
		n++
	}
	return n == len(want)
}

func typeList(ts []uint16) string {
	if len(ts) == 0 {
		return "(none)"
	}
	s := slices.Clone(ts)
	slices.Sort(s)
	parts := make([]string, len(s))
	for i, t := range s {
		parts[i] = typeName(t)
	}
	return strings.Join(parts, " ")
}

// checkNSEC walks the names in canonical order: each must have exactly
// one NSEC naming its successor, the last one naming the apex.
func checkNSEC(ctx context.Context, ix *Index, col *collector) error {
	names := chainNames(ix)
	keys := make([]string, len(names))
	kept := names[:0]
	for i, n := range names {
		k, err := canonicalKey(n.Name)
		if err != nil {
			col.at(nil, n.First, "bad-name", n.Name, "", "cannot order the name canonically: %v", err)
			continue
		}
		keys[len(kept)] = k
		kept = append(kept, names[i])
	}
	names, keys = kept, keys[:len(kept)]
	order := make([]int32, len(names))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(keys[a], keys[b]) })
	if err := ctx.Err(); err != nil {
		return err
	}

	var buf []uint16
	for k, oi := range order {
		n := names[oi]
		next := names[order[(k+1)%len(order)]]
		set := n.Set(dns.TypeNSEC)
		if set == nil {
			prev := names[order[(k+len(order)-1)%len(order)]]
			col.at(nil, n.First, "nsec-missing", n.Name, "NSEC",
				"no NSEC record: the chain is broken between %s and %s", prev.Name, next.Name)
			continue
		}
		if len(set.Records()) > 1 {
			col.at(nil, set.Records()[1], "nsec-several", n.Name, "NSEC", "%d NSEC records at one name", len(set.Records()))
		}
		r, ok := ix.RR(set.Records()[0]).(*dns.NSEC)
		if !ok {
			continue
		}
		if got := lowerName(r.NextDomain); got != next.Name {
			col.at(nil, set.Records()[0], "nsec-next", n.Name, "NSEC",
				"NSEC points to %s, the next name in canonical order is %s", got, next.Name)
		}
		buf = expectedTypes(n, buf)
		if !sameTypes(r.TypeBitMap, buf) {
			col.at(nil, set.Records()[0], "nsec-bitmap", n.Name, "NSEC",
				"NSEC type bitmap lists %s, the name has %s", typeList(r.TypeBitMap), typeList(buf))
		}
	}
	return nil
}

// b32hex is base32hex lower case without padding, as NSEC3 owner labels are
// compared here (RFC 5155 §3.3; the zone may spell them in either case).
var b32hex = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// nsec3Hash is RFC 5155 §5 for a lower-case absolute name.
func nsec3Hash(name string, iterations uint16, salt []byte) (string, error) {
	var wire [256]byte
	n, err := dns.PackDomainName(name, wire[:], 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("hash %q: %w", name, err)
	}
	h := sha1.New()
	h.Write(wire[:n])
	h.Write(salt)
	var sum [sha1.Size]byte
	digest := h.Sum(sum[:0])
	for range iterations {
		h.Reset()
		h.Write(digest)
		h.Write(salt)
		digest = h.Sum(digest[:0])
	}
	return b32hex.EncodeToString(digest), nil
}

// nsec3Rec is one NSEC3 record of a chain.
type nsec3Rec struct {
	rec  int32
	r    *dns.NSEC3
	hash string // owner's first label, lower case
	used bool
}

// chainName is a name an NSEC3 chain must match. node is nil for an empty
// non-terminal (a name without data with names below it), which RFC 5155
// §7.1 also gives an NSEC3, unless it only leads to insecure delegations
// left out under opt-out.
type chainName struct {
	node     *Node  // nil for an empty non-terminal
	name     string // lower case
	optional bool   // may be absent when the covering NSEC3 has opt-out
}

// checkNSEC3 checks one chain per NSEC3PARAM: every NSEC3 owner hashed
// with those parameters, the chain closed in hash order, every name (and
// empty non-terminal) matched by exactly one NSEC3 with the right bitmap,
// except insecure delegations under opt-out.
func checkNSEC3(ctx context.Context, ix *Index, col *collector) error {
	origin := ix.Origin()
	var all []nsec3Rec
	for _, n := range ix.Nodes() {
		s := n.Set(dns.TypeNSEC3)
		if s == nil {
			continue
		}
		for _, i := range s.Records() {
			r, ok := ix.RR(i).(*dns.NSEC3)
			if !ok {
				continue
			}
			if parentName(n.Name) != origin {
				col.at(nil, i, "nsec3-owner", n.Name, "NSEC3", "NSEC3 owner is not a hash label directly below the apex %s", origin)
				continue
			}
			all = append(all, nsec3Rec{rec: i, r: r, hash: strings.ToLower(firstLabel(n.Name))})
		}
	}
	params := ix.Apex().Set(dns.TypeNSEC3PARAM)
	if params == nil {
		if len(all) == 0 {
			return nil // only misplaced NSEC3 records, reported above
		}
		col.at(nil, all[0].rec, "nsec3-no-param", origin, "NSEC3PARAM",
			"NSEC3 records but no NSEC3PARAM at the apex: authoritative servers cannot use the chain")
		return nil
	}

	names := nsec3Names(ix)
	matched := make([]bool, len(all))
	for _, pi := range params.Records() {
		p, ok := ix.RR(pi).(*dns.NSEC3PARAM)
		if !ok {
			continue
		}
		if p.Flags != 0 {
			col.at(nil, pi, "nsec3param-flags", origin, "NSEC3PARAM",
				"NSEC3PARAM flags %d: must be 0 (RFC 5155 §4.1.2; opt-out lives in the NSEC3 records)", p.Flags)
		}
		if p.Hash != dns.SHA1 {
			col.at(nil, pi, "nsec3-hash", origin, "NSEC3PARAM", "unknown NSEC3 hash algorithm %d", p.Hash)
			continue
		}
		salt, err := hex.DecodeString(saltHex(p.Salt))
		if err != nil {
			col.at(nil, pi, "nsec3-salt", origin, "NSEC3PARAM", "salt %q is not hex", p.Salt)
			continue
		}
		var chain []*nsec3Rec
		for i := range all {
			r := all[i].r
			if r.Hash == p.Hash && r.Iterations == p.Iterations && strings.EqualFold(saltHex(r.Salt), saltHex(p.Salt)) {
				chain = append(chain, &all[i])
				matched[i] = true
			}
		}
		if len(chain) == 0 {
			col.at(nil, pi, "nsec3-empty", origin, "NSEC3PARAM",
				"NSEC3PARAM (hash %d, %d iterations, salt %s) has no NSEC3 chain", p.Hash, p.Iterations, saltHex(p.Salt))
			continue
		}
		if err := checkNSEC3Chain(ctx, ix, col, chain, names, p.Iterations, salt); err != nil {
			return err
		}
	}
	for i, m := range matched {
		if !m {
			r := all[i].r
			col.at(nil, all[i].rec, "nsec3-param-mismatch", lowerName(r.Hdr.Name), "NSEC3",
				"NSEC3 parameters (hash %d, %d iterations, salt %s) match no NSEC3PARAM", r.Hash, r.Iterations, saltHex(r.Salt))
		}
	}
	return nil
}

func saltHex(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// nsec3Names lists the names an NSEC3 chain must (or, under opt-out, may)
// match: names with data outside occluded space, and empty non-terminals.
func nsec3Names(ix *Index) []chainName {
	origin := ix.Origin()
	nodes := chainNames(ix)
	out := make([]chainName, 0, len(nodes))
	ents := map[string]int{} // name -> position in out
	for _, n := range nodes {
		insecure := n.Cut && !n.Has(dns.TypeDS)
		out = append(out, chainName{node: n, name: n.Name, optional: insecure})
		if n.Apex {
			continue
		}
		// Stop at the first ancestor with data: its own walk covers the
		// names above it.
		for p := parentName(n.Name); p != "" && strictlyUnder(p, origin); p = parentName(p) {
			if a := ix.Node(p); a != nil && len(a.Sets) > 0 {
				break
			}
			if k, ok := ents[p]; ok {
				out[k].optional = out[k].optional && insecure
				continue
			}
			ents[p] = len(out)
			out = append(out, chainName{name: p, optional: insecure})
		}
	}
	return out
}

func checkNSEC3Chain(ctx context.Context, ix *Index, col *collector, chain []*nsec3Rec, names []chainName, iterations uint16, salt []byte) error {
	slices.SortFunc(chain, func(a, b *nsec3Rec) int { return strings.Compare(a.hash, b.hash) })
	for _, c := range chain {
		c.used = false
	}
	for i, c := range chain {
		if i > 0 && chain[i-1].hash == c.hash {
			col.at(nil, c.rec, "nsec3-duplicate", lowerName(c.r.Hdr.Name), "NSEC3", "two NSEC3 records with the same hash")
			continue
		}
		next := chain[(i+1)%len(chain)]
		if got := strings.ToLower(c.r.NextDomain); got != next.hash {
			col.at(nil, c.rec, "nsec3-next", lowerName(c.r.Hdr.Name), "NSEC3",
				"NSEC3 chain broken: points to %s, the next hash in the chain is %s", got, next.hash)
		}
	}

	// Hashing is SHA-1 per name (times iterations): spread it out.
	hashes := make([]string, len(names))
	errs := make([]error, len(names))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			const chunk = 256
			for {
				start := int(next.Add(chunk)) - chunk
				if start >= len(names) || ctx.Err() != nil {
					return
				}
				for i := start; i < min(start+chunk, len(names)); i++ {
					hashes[i], errs[i] = nsec3Hash(names[i].name, iterations, salt)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	find := func(h string) int {
		return sort.Search(len(chain), func(i int) bool { return chain[i].hash >= h })
	}
	var buf []uint16
	for i, cn := range names {
		loc := ix.Apex().First
		if cn.node != nil {
			loc = cn.node.First
		}
		if errs[i] != nil {
			col.at(nil, loc, "bad-name", cn.name, "", "%v", errs[i])
			continue
		}
		h := hashes[i]
		k := find(h)
		if k < len(chain) && chain[k].hash == h {
			c := chain[k]
			c.used = true
			if cn.node == nil {
				buf = buf[:0]
			} else {
				buf = expectedTypes(cn.node, buf)
			}
			if !sameTypes(c.r.TypeBitMap, buf) {
				col.at(nil, c.rec, "nsec3-bitmap", cn.name, "NSEC3",
					"NSEC3 %s type bitmap lists %s, the name has %s", h, typeList(c.r.TypeBitMap), typeList(buf))
			}
			continue
		}
		cover := chain[(k+len(chain)-1)%len(chain)]
		what := "name"
		if cn.node == nil {
			what = "empty non-terminal"
		}
		switch {
		case cn.optional && cover.r.Flags&1 != 0:
			// Opted out: an insecure delegation (or a name leading
			// only to them) covered by an opt-out span.
		case cn.optional:
			col.at(nil, loc, "nsec3-missing", cn.name, "NSEC3",
				"insecure delegation has no NSEC3 (hash %s) and the covering NSEC3 %s has no opt-out flag", h, cover.hash)
		default:
			col.at(nil, loc, "nsec3-missing", cn.name, "NSEC3",
				"no NSEC3 record for this %s (hash %s): the chain has a hole between %s and %s", what, h, cover.hash, cover.r.NextDomain)
		}
	}
	for _, c := range chain {
		if !c.used {
			col.at(nil, c.rec, "nsec3-orphan", lowerName(c.r.Hdr.Name), "NSEC3", "NSEC3 matches no name in the zone")
		}
	}
	return nil
}
