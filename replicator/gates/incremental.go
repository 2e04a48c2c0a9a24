package gates

// Incremental checks (Input.PreviousPassed). A registry's next version
// differs from the last one by a few hundred delegations out of a million;
// checking every name again costs seconds that a zone sitting at the
// signer waiting to be published should not wait. When the previous
// version passed every gate without a finding, a per-name check can only
// find something at a name whose records or place in the zone changed
// (indexDiff), or at a name such a change reaches: the delegations whose
// name servers' addresses changed, the NSEC chain around a change. Each
// gate's incremental path looks only there; whole-zone checks (signature
// validity windows, which move with the clock, counts, required names)
// still run over everything. An incremental path that finds anything at
// all gives up and the gate runs in full, so a refused version is reported
// exactly as a full check reports it; a version it passes is one the full
// check passes too (TestIncrementalMatchesFull holds both to that on
// random changes).

import (
	"context"
	"encoding/hex"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// hasAddress reports whether n has an A or AAAA set (nil: no).
func hasAddress(n *Node) bool {
	return n != nil && (n.Has(dns.TypeA) || n.Has(dns.TypeAAAA))
}

// isDelegation: a delegation point that is not itself occluded.
func isDelegation(n *Node) bool { return n != nil && n.Cut && !n.Below }

// incremental checks the changed names, and the delegations whose glue a
// change may have taken away or given; ok is false when it found anything
// (or cannot tell), and the full check must run.
func (g apexGate) incremental(ctx context.Context, ix *Index, d *indexDiff) (Result, bool) {
	col := newCollector(GateApex, g.c, ix)
	g.apexRecords(col, ix)
	prev := ix.previous
	// Names whose having an address changed, and names that became or
	// stopped being delegation points: the glue verdict of any name
	// server at or below them may differ now. As lower-case wire names,
	// to compare with name server targets without decoding them.
	addr, cuts := map[string]bool{}, map[string]bool{}
	wire := func(name string) (string, bool) {
		var b [256]byte
		n, err := dns.PackDomainName(name, b[:], 0, nil, false)
		return string(b[:n]), err == nil
	}
	note := func(name string, before, after *Node) bool {
		w, ok := wire(name)
		if !ok {
			return false
		}
		if hasAddress(before) != hasAddress(after) {
			addr[w] = true
		}
		if (before != nil && before.Cut) != (after != nil && after.Cut) {
			cuts[w] = true
		}
		return true
	}
	recheck := map[*Node]bool{}
	for k, n := range d.changed {
		if k%4096 == 0 && ctx.Err() != nil {
			return Result{}, false
		}
		g.node(col, ix, n)
		if n.Apex || isDelegation(n) {
			recheck[n] = true
		}
		if !note(n.Name, prev.Node(n.Name), n) {
			return Result{}, false
		}
	}
	for _, p := range d.gone {
		if !note(p.Name, p, nil) {
			return Result{}, false
		}
	}
	if col.total > 0 {
		return Result{}, false
	}
	if len(addr) > 0 || len(cuts) > 0 {
		for _, n := range referrers(ix, addr, cuts) {
			recheck[n] = true
		}
	}
	for n := range recheck {
		g.checkNS(col, ix, n)
	}
	if col.total > 0 || ctx.Err() != nil {
		return Result{}, false
	}
	return g.result(col, ix), true
}

// referrers returns the delegations (and the apex) with a name server
// whose lower-case wire name is in addr, or at or below a name in cuts.
// It reads every NS record's target in wire form, on every core.
func referrers(ix *Index, addr, cuts map[string]bool) []*Node {
	nodes := append([]*Node{ix.Apex()}, ix.Delegations()...)
	workers := runtime.GOMAXPROCS(0)
	found := make([][]*Node, workers)
	var wg sync.WaitGroup
	z := ix.Zone()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lower []byte
			for _, n := range nodes[len(nodes)*w/workers : len(nodes)*(w+1)/workers] {
				ns := n.Set(dns.TypeNS)
				if ns == nil {
					continue
				}
			records:
				for _, i := range ns.Records() {
					raw := z.Raw(int(i))
					lower = appendLowerName(lower[:0], raw[10:])
					if addr[string(lower)] {
						found[w] = append(found[w], n)
						break
					}
					if len(cuts) == 0 {
						continue
					}
					for p := 0; p < len(lower) && lower[p] != 0; p += int(lower[p]) + 1 {
						if cuts[string(lower[p:])] {
							found[w] = append(found[w], n)
							break records
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	var out []*Node
	for _, f := range found {
		out = append(out, f...)
	}
	return out
}

// nsecStillValid reports whether the NSEC chain, complete and in order in
// the previous version, still is after the changes of d. Every name has
// one NSEC naming one next name; the chain is one cycle in canonical
// order exactly when every name in it is named by exactly one NSEC and
// exactly one NSEC points backwards (from the last name to the apex):
// a permutation's cycles each need a backward step of their own. Both
// counts move only by the NSEC records of changed names, so only those are
// read. False means "not proven": the full check decides.
func nsecStillValid(ix *Index, d *indexDiff) bool {
	prev := ix.previous
	member := func(n *Node) bool { return n != nil && !n.Below && !n.NSEC3Owner && len(n.Sets) > 0 }
	next := func(x *Index, n *Node) (string, bool) {
		set := n.Set(dns.TypeNSEC)
		if set == nil || len(set.Records()) != 1 {
			return "", false
		}
		r, ok := x.RR(set.Records()[0]).(*dns.NSEC)
		if !ok {
			return "", false
		}
		return lowerName(r.NextDomain), true
	}
	backwards := func(from, to string) (bool, bool) {
		a, err1 := canonicalKey(from)
		b, err2 := canonicalKey(to)
		return strings.Compare(a, b) >= 0, err1 == nil && err2 == nil
	}
	in := map[string]int{} // change of each name's in-degree
	back := 0              // change of the number of backward steps
	var buf []uint16
	edge := func(x *Index, n *Node, sign int) bool {
		to, ok := next(x, n)
		if !ok {
			return false
		}
		b, ok := backwards(n.Name, to)
		if !ok || b && sign > 0 && to != ix.Origin() {
			return false
		}
		in[to] += sign
		if b {
			back += sign
		}
		return true
	}
	for _, n := range d.changed {
		if p := prev.Node(n.Name); member(p) && !edge(prev, p, -1) {
			return false
		}
		if member(n) {
			if !edge(ix, n, +1) {
				return false
			}
			r, _ := ix.RR(n.Set(dns.TypeNSEC).Records()[0]).(*dns.NSEC)
			if buf = expectedTypes(n, buf); !sameTypes(r.TypeBitMap, buf) {
				return false
			}
		}
	}
	for _, p := range d.gone {
		if member(p) && !edge(prev, p, -1) {
			return false
		}
	}
	if back != 0 {
		return false
	}
	degree := func(name string) bool {
		before := 0
		if member(prev.Node(name)) {
			before = 1
		}
		want := 0
		if member(ix.Node(name)) {
			want = 1
		}
		return before+in[name] == want
	}
	for name := range in {
		if !degree(name) {
			return false
		}
	}
	for name := range d.names {
		if !degree(name) {
			return false
		}
	}
	return true
}

// nsec3StillValid is nsecStillValid for a zone with one NSEC3 chain (and
// no NSEC): the ring of hashed owners is proven one ordered cycle the same
// way, in hash order, and every name that changed has the NSEC3 its hash
// calls for with the right bitmap, or none when it no longer needs one. A
// changed NSEC3 record that keeps its bitmap keeps matching the name it
// matched. It gives up (the full check decides) on anything it cannot
// settle from the changed names alone: another NSEC3PARAM, records with
// other parameters, an empty non-terminal appearing or going, an insecure
// delegation left without its own NSEC3, opt-out flags not uniform.
func nsec3StillValid(ix *Index, d *indexDiff) bool {
	prev := ix.previous
	origin := ix.Origin()
	pa, pb := ix.Apex().Set(dns.TypeNSEC3PARAM), prev.Apex().Set(dns.TypeNSEC3PARAM)
	if pa == nil || pb == nil || len(pa.Records()) != 1 || !sameRecords(ix, pa, prev, pb) {
		return false
	}
	param, ok := ix.RR(pa.Records()[0]).(*dns.NSEC3PARAM)
	if !ok || param.Flags != 0 || param.Hash != dns.SHA1 {
		return false
	}
	salt, err := hex.DecodeString(saltHex(param.Salt))
	if err != nil {
		return false
	}
	// Opt-out on every record or on none: then an opted-out name's
	// covering record has the flag whichever record covers it now.
	uniform := prev.nsec3OptOut == 0 || prev.nsec3OptOut == prev.nsec3Count
	if !uniform {
		return false
	}
	optOut := prev.nsec3OptOut > 0
	record := func(x *Index, n *Node) (*dns.NSEC3, bool) {
		s := n.Set(dns.TypeNSEC3)
		if s == nil || len(s.Records()) != 1 || parentName(n.Name) != origin {
			return nil, false
		}
		r, ok := x.RR(s.Records()[0]).(*dns.NSEC3)
		if !ok || r.Hash != param.Hash || r.Iterations != param.Iterations || !strings.EqualFold(saltHex(r.Salt), saltHex(param.Salt)) {
			return nil, false
		}
		return r, true
	}
	member := func(n *Node) bool { return n != nil && !n.Below && !n.NSEC3Owner && len(n.Sets) > 0 }

	// The ring: in-degree and backward steps, as for NSEC, over hashes.
	in := map[string]int{}
	back := 0
	edge := func(x *Index, n *Node, sign int) bool {
		r, ok := record(x, n)
		if !ok {
			return false
		}
		from, to := strings.ToLower(firstLabel(n.Name)), strings.ToLower(r.NextDomain)
		if sign > 0 && optOut != (r.Flags&1 != 0) {
			return false
		}
		in[to] += sign
		if from >= to {
			back += sign
		}
		return true
	}
	ring := map[string]bool{} // hashes whose ring membership may have changed
	// Names (not hashed owners) that changed, by their hash.
	type named struct{ now, before *Node }
	byHash := map[string]named{}
	hashOf := func(name string) (string, bool) {
		h, err := nsec3Hash(name, param.Iterations, salt)
		return h, err == nil
	}
	for _, n := range d.changed {
		if p := prev.Node(n.Name); p != nil && p.NSEC3Owner && !edge(prev, p, -1) {
			return false
		}
		if n.NSEC3Owner {
			if !edge(ix, n, +1) {
				return false
			}
			ring[strings.ToLower(firstLabel(n.Name))] = true
			continue
		}
		h, ok := hashOf(n.Name)
		if !ok {
			return false
		}
		byHash[h] = named{now: n, before: prev.Node(n.Name)}
	}
	for _, p := range d.gone {
		if p.NSEC3Owner {
			if !edge(prev, p, -1) {
				return false
			}
			ring[strings.ToLower(firstLabel(p.Name))] = true
			continue
		}
		h, ok := hashOf(p.Name)
		if !ok {
			return false
		}
		byHash[h] = named{before: p}
	}
	if back != 0 {
		return false
	}
	owner := func(x *Index, h string) *Node {
		if n := x.Node(h + "." + origin); n != nil && n.NSEC3Owner {
			return n
		}
		return nil
	}
	for h := range in {
		ring[h] = true
	}
	for h := range ring {
		before, want := 0, 0
		if owner(prev, h) != nil {
			before = 1
		}
		if owner(ix, h) != nil {
			want = 1
		}
		if before+in[h] != want {
			return false
		}
	}

	// Each changed name: no empty non-terminal appears or goes above it,
	// and it has the NSEC3 it needs (with its bitmap) or none.
	var buf []uint16
	for h, c := range byHash {
		for _, n := range []*Node{c.now, c.before} {
			if !member(n) {
				continue // glue and the like: not in the chain, nor their parents for them
			}
			for p := parentName(n.Name); p != "" && strictlyUnder(p, origin); p = parentName(p) {
				if !member(ix.Node(p)) || !member(prev.Node(p)) {
					if a, b := ix.Node(p), prev.Node(p); a == nil || b == nil || a.Below != b.Below {
						return false
					}
				}
			}
		}
		o := owner(ix, h)
		switch {
		case !member(c.now):
			if o != nil {
				return false // an NSEC3 for a name that is gone
			}
		case o == nil && optOut && c.now.Cut && !c.now.Has(dns.TypeDS):
			// An insecure delegation opted out: every record has the
			// flag, so whichever covers it does.
		case o == nil:
			return false // missing
		default:
			r, ok := record(ix, o)
			if buf = expectedTypes(c.now, buf); !ok || !sameTypes(r.TypeBitMap, buf) {
				return false
			}
		}
	}
	// Each changed or gone hashed owner (all are in ring): its bitmap
	// is what it was (it still matches the name it matched), or it
	// belongs to a changed name checked above.
	for h := range ring {
		o := owner(ix, h)
		if o == nil {
			if _, ok := byHash[h]; !ok {
				return false // an NSEC3 went, and its name did not change
			}
			continue
		}
		if _, ok := byHash[h]; ok {
			continue
		}
		p := owner(prev, h)
		if p == nil {
			return false // a new NSEC3 for no changed name
		}
		r, ok1 := record(ix, o)
		q, ok2 := record(prev, p)
		if !ok1 || !ok2 || !slices.Equal(r.TypeBitMap, q.TypeBitMap) {
			return false
		}
	}
	return true
}
