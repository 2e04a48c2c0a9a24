package gates

// The budget gate traces to three incidents in INCIDENTS.md. .se 2009
// (§2): the automatic block on unusually large changes fired and was
// overridden; regdr keeps that block (and makes an override take two
// people, elsewhere). RIPE NCC 2012 (§3): zones cold-started EMPTY, then
// reloaded with 43% and 54% of their delegations missing, all propagated.
// RIPE NCC 2017 (§4): a valid, signed, empty zonelet made two peers delete
// every delegation in it; a valid signature says who sent the data, not
// that the data is sane. So every version is compared with the last
// published one (or the last accepted one before anything was published),
// delegation by delegation: how many were removed, added, or changed (NS
// or DS set differs), each against its own limit, and the names listed.
// An empty or apex-only zone replacing one that had delegations is refused
// whatever the thresholds say: no threshold setting can make "delete the
// whole TLD" a routine change.

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

type budgetGate struct{ c Config }

func (budgetGate) Name() string { return GateBudget }

func (g budgetGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	base, what := ix.Published(), "published"
	if base == nil {
		base, what = ix.Previous(), "previous"
	}
	if base == nil {
		return skip(GateBudget, "first version: no earlier version to compare with")
	}
	col := newCollector(GateBudget, g.c, ix)
	nb, nc := len(base.Delegations()), len(ix.Delegations())
	var why []string

	// Empty and apex-only zones, refused unconditionally.
	nonApex := func(x *Index) int {
		n := 0
		for _, nd := range x.Nodes() {
			if !nd.Apex && !nd.NSEC3Owner {
				n++
			}
		}
		return n
	}
	if nc == 0 && (nb > 0 || (nonApex(ix) == 0 && nonApex(base) > 0)) {
		kind, desc := "apex-only", "apex-only zone"
		if ap := ix.Apex(); ap == nil || len(ap.Sets) <= 1 && len(ix.Nodes()) <= 1 {
			kind, desc = "empty-zone", "empty zone"
		}
		had := plural(nb, "delegation", "delegations")
		if nb == 0 {
			had = plural(nonApex(base), "name", "names") + " below the apex"
		}
		msg := fmt.Sprintf("%s: no delegations, the %s version (serial %d) has %s; refused whatever the thresholds",
			desc, what, base.Zone().Serial, had)
		col.at(nil, 0, kind, ix.Origin(), "", "%s", msg)
		why = append(why, msg)
	}

	var removed, added, changed []*Node
	if d := ix.diff; d != nil && base == ix.previous {
		// Only changed names can be delegations removed, added or
		// changed (incremental.go).
		removed, added, changed = budgetChanges(base, ix, d)
	} else {
		for k, d := range base.Delegations() {
			if k%4096 == 0 && ctx.Err() != nil {
				return cancelled(GateBudget, ctx.Err())
			}
			cn := ix.Node(d.Name)
			switch {
			case !isDelegation(cn):
				removed = append(removed, d)
			case !sameNS(base, d, ix, cn) || !sameDS(base, d, ix, cn):
				changed = append(changed, cn)
			}
		}
		for _, d := range ix.Delegations() {
			if !isDelegation(base.Node(d.Name)) {
				added = append(added, d)
			}
		}
	}

	den := max(nb, g.c.MinChangeBase)
	check := func(kind string, list []*Node, pct float64, x *Index, verb string) {
		limit := pct / 100 * float64(den)
		if float64(len(list)) <= limit {
			return
		}
		share := ""
		if nb > 0 {
			share = fmt.Sprintf(" (%.1f%%)", 100*float64(len(list))/float64(nb))
		}
		why = append(why, fmt.Sprintf("%d of %d delegations %s%s, limit %g%% of %d = %d",
			len(list), nb, verb, share, pct, den, int(limit)))
		for _, d := range list {
			col.at(x, d.First, kind, d.Name, "NS", "delegation %s (limit %g%% exceeded)", verb, pct)
		}
	}
	check("removed", removed, g.c.MaxRemovedPercent, base, "removed since the "+what+" version")
	check("added", added, g.c.MaxAddedPercent, ix, "added")
	check("changed", changed, g.c.MaxChangedPercent, ix, "changed (NS or DS)")

	res := col.result(fmt.Sprintf("vs the %s version (serial %d): %d removed, %d added, %d changed of %d delegations",
		what, base.Zone().Serial, len(removed), len(added), len(changed), nb))
	if res.Status == StatusFail {
		res.Reason = strings.Join(why, "; ")
	}
	return res
}

// sameNS compares the NS targets of two delegations, ignoring case, TTL
// and order.
func sameNS(ax *Index, a *Node, bx *Index, b *Node) bool {
	as, bs := a.Set(dns.TypeNS), b.Set(dns.TypeNS)
	return sameSet(ax, as, bx, bs, func(x, y dns.RR) bool {
		p, ok1 := x.(*dns.NS)
		q, ok2 := y.(*dns.NS)
		return ok1 && ok2 && strings.EqualFold(p.Ns, q.Ns)
	})
}

// sameDS compares the DS sets of two delegations, ignoring TTL, order and
// the case of the hex digest.
func sameDS(ax *Index, a *Node, bx *Index, b *Node) bool {
	as, bs := a.Set(dns.TypeDS), b.Set(dns.TypeDS)
	return sameSet(ax, as, bx, bs, func(x, y dns.RR) bool {
		p, ok1 := x.(*dns.DS)
		q, ok2 := y.(*dns.DS)
		return ok1 && ok2 && p.KeyTag == q.KeyTag && p.Algorithm == q.Algorithm &&
			p.DigestType == q.DigestType && strings.EqualFold(p.Digest, q.Digest)
	})
}

// sameSet: every record of each set has an equal one in the other. Sets
// are a handful of records, so the quadratic loop beats building maps.
func sameSet(ax *Index, as *RRset, bx *Index, bs *RRset, eq func(x, y dns.RR) bool) bool {
	if as == nil || bs == nil {
		return as == nil && bs == nil
	}
	// RR decodes the record on every call: each record once, here.
	a, b := setRecords(ax, as), setRecords(bx, bs)
	contains := func(xs, ys []dns.RR) bool {
		for _, x := range xs {
			found := false
			for _, y := range ys {
				if eq(x, y) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	return contains(a, b) && contains(b, a)
}

// setRecords is the records of s in ix.
func setRecords(ix *Index, s *RRset) []dns.RR {
	out := make([]dns.RR, len(s.Records()))
	for k, i := range s.Records() {
		out[k] = ix.RR(i)
	}
	return out
}

// budgetChanges is the budget's comparison over the names d lists, in the
// order the full comparison finds them (name order).
func budgetChanges(base, ix *Index, d *indexDiff) (removed, added, changed []*Node) {
	i, j := 0, 0
	for i < len(d.gone) || j < len(d.changed) {
		if j == len(d.changed) || i < len(d.gone) && d.gone[i].Name < d.changed[j].Name {
			if g := d.gone[i]; isDelegation(g) {
				removed = append(removed, g)
			}
			i++
			continue
		}
		cn := d.changed[j]
		j++
		bn := base.Node(cn.Name)
		switch {
		case isDelegation(bn) && !isDelegation(cn):
			removed = append(removed, bn)
		case isDelegation(bn) && (!sameNS(base, bn, ix, cn) || !sameDS(base, bn, ix, cn)):
			changed = append(changed, cn)
		case !isDelegation(bn) && isDelegation(cn):
			added = append(added, cn)
		}
	}
	return removed, added, changed
}
