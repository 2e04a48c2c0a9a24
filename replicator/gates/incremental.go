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
	"runtime"
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
