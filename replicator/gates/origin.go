package gates

// The origin gate traces to INCIDENTS.md §2, .se 12 October 2009: a zone
// generator update dropped the trailing dot on the origin and every owner
// name became "name.se.se.". Those names are still inside the zone (se.se.
// is below se.), so a plain "is it in the zone" test passes them; the
// doubled origin needs its own check, and must fire whether every name is
// doubled or only three are (a partly broken template). A real domain
// named like the doubled origin ("test.test.", registered under test.) is
// let through once it was a delegation in the previous version too. Names outside the
// zone are refused too: a server would silently drop them, so the zone
// served would not be the zone checked.

import (
	"context"
	"fmt"
	"strings"
)

type originGate struct{ c Config }

func (originGate) Name() string { return GateOrigin }

func (g originGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	col := newCollector(GateOrigin, g.c, ix)
	z := ix.Zone()
	for _, i := range ix.Outside() {
		h := z.RR(int(i)).Header()
		col.at(nil, i, "out-of-zone", lowerName(h.Name), typeName(h.Rrtype),
			"owner name is outside the zone %s", ix.Origin())
	}
	outside := col.total

	doubled := doubledOrigin(ix.Origin())
	var nDoubled int
	if doubled != "" && !establishedDelegation(ix, doubled) {
		for _, n := range ix.Nodes() {
			if !under(n.Name, doubled) {
				continue
			}
			nDoubled++
			col.at(nil, n.First, "doubled-origin", n.Name, "",
				"doubled origin %s: missing trailing dot?", doubled)
		}
	}
	if err := ctx.Err(); err != nil {
		return cancelled(GateOrigin, err)
	}
	res := col.result(fmt.Sprintf("all %s inside %s", plural(len(ix.Nodes()), "name", "names"), ix.Origin()))
	var why []string
	if nDoubled > 0 {
		why = append(why, fmt.Sprintf("doubled origin: %d of %d names end in %s: missing trailing dot?", nDoubled, len(ix.Nodes()), doubled))
	}
	if outside > 0 {
		why = append(why, fmt.Sprintf("%s outside the zone %s", plural(outside, "record", "records"), ix.Origin()))
	}
	if len(why) > 0 {
		res.Reason = strings.Join(why, "; ")
	}
	return res
}

// establishedDelegation reports that name is a delegation in the candidate
// and already was one in the previous version: "test.test." can be a real
// registered domain under test., and names below it are then its glue.
// A new delegation there is still reported, once, for a person to judge.
func establishedDelegation(ix *Index, name string) bool {
	n := ix.Node(name)
	if n == nil || !n.Cut {
		return false
	}
	for _, p := range []*Index{ix.Previous(), ix.Published()} {
		if p != nil {
			if pn := p.Node(name); pn != nil && pn.Cut {
				return true
			}
		}
	}
	return false
}

// doubledOrigin is what a relative name gets when the origin itself was
// written without its trailing dot: "test." doubles to "test.test.". The
// root has no such failure.
func doubledOrigin(origin string) string {
	if origin == "." || origin == "" {
		return ""
	}
	return origin + origin
}
