package gates

// The apex gate traces to INCIDENTS.md §1 (.hk 2004) and §3 (RIPE NCC
// 2012): a half-written or cold-started zone still parses, but a zone
// without its SOA and NS at the apex, with delegations whose in-domain
// name servers lost their glue (the glue section is the tail of a
// generated file, the first thing a truncation eats), or with data hidden
// below a delegation point, is a zone resolvers cannot use even though
// every record in it is well formed. It also refuses what a name server
// would refuse or silently mangle: a CNAME beside other data (RFC 1034
// §3.6.2, RFC 2181 §10.1) and a DS without the NS that makes its owner a
// delegation.

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

type apexGate struct{ c Config }

func (apexGate) Name() string { return GateApex }

func (g apexGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	if d := ix.diff; d != nil {
		if res, ok := g.incremental(ctx, ix, d); ok {
			return res
		}
	}
	col := newCollector(GateApex, g.c, ix)
	apex := ix.Apex()
	g.apexRecords(col, ix)
	for k, n := range ix.Nodes() {
		if k%4096 == 0 && ctx.Err() != nil {
			return cancelled(GateApex, ctx.Err())
		}
		g.node(col, ix, n)
	}
	if apex != nil {
		g.checkNS(col, ix, apex)
	}
	for _, d := range ix.Delegations() {
		g.checkNS(col, ix, d)
	}
	return g.result(col, ix)
}

// apexRecords checks the apex holds SOA and NS.
func (g apexGate) apexRecords(col *collector, ix *Index) {
	apex, origin := ix.Apex(), ix.Origin()
	switch {
	case apex == nil:
		col.add(Finding{Kind: "no-soa", Name: origin, Type: "SOA", Msg: "no records at the apex"})
	case !apex.Has(dns.TypeSOA):
		col.at(nil, apex.First, "no-soa", origin, "SOA", "no SOA at the apex")
	}
	if apex != nil && !apex.Has(dns.TypeNS) {
		col.at(nil, apex.First, "no-apex-ns", origin, "NS", "no NS records at the apex: the zone cannot be served")
	}
}

// result is the gate's verdict once every check has run.
func (g apexGate) result(col *collector, ix *Index) Result {
	res := col.result(fmt.Sprintf("apex SOA and NS present; %s checked", plural(len(ix.Delegations()), "delegation", "delegations")))
	if res.Status == StatusFail {
		res.Reason = col.summary()
	}
	return res
}

// node checks what one name holds: CNAME beside data, DS without NS,
// data occluded by a delegation.
func (g apexGate) node(col *collector, ix *Index, n *Node) {
	if cs := n.Set(dns.TypeCNAME); cs != nil {
		var others []string
		for _, s := range n.Sets {
			if s.Type != dns.TypeCNAME && s.Type != dns.TypeNSEC {
				others = append(others, typeName(s.Type))
			}
		}
		if len(others) > 0 {
			col.at(nil, cs.Records()[0], "cname-and-data", n.Name, "CNAME",
				"CNAME beside other data (%s); RFC 1034 §3.6.2 allows no other data at an alias", strings.Join(others, " "))
		}
		if len(cs.Records()) > 1 {
			col.at(nil, cs.Records()[1], "several-cname", n.Name, "CNAME",
				"%d CNAME records at one name; an alias has exactly one target", len(cs.Records()))
		}
	}
	if !n.Apex && !n.Cut && !n.Below {
		if ds := n.Set(dns.TypeDS); ds != nil {
			col.at(nil, ds.Records()[0], "empty-delegation", n.Name, "DS",
				"DS without NS: an empty delegation (a delegation point needs NS records)")
		}
	}
	switch {
	case n.Below:
		cut := ix.cutAtOrAbove(parentName(n.Name))
		for _, s := range n.Sets {
			if s.Type == dns.TypeA || s.Type == dns.TypeAAAA {
				continue // glue
			}
			col.at(nil, s.Records()[0], "occluded", n.Name, typeName(s.Type),
				"occluded by the delegation %s: never served (only glue A/AAAA belongs below a delegation)", cutName(cut))
		}
	case n.Cut:
		for _, s := range n.Sets {
			switch s.Type {
			case dns.TypeNS, dns.TypeDS, dns.TypeNSEC, dns.TypeA, dns.TypeAAAA, dns.TypeCNAME:
				continue // CNAME is reported above as data beside NS
			}
			col.at(nil, s.Records()[0], "occluded", n.Name, typeName(s.Type),
				"at the delegation point: only NS, DS, NSEC and glue belong here, %s is never served", typeName(s.Type))
		}
	}
}

// checkNS checks the glue of the name servers of n (a delegation or the
// apex).
func (g apexGate) checkNS(col *collector, ix *Index, n *Node) {
	origin := ix.Origin()
	// Glue: a name server inside the delegation it serves cannot be found
	// without the address records the parent publishes with the NS set.
	ns := n.Set(dns.TypeNS)
	if ns == nil {
		return
	}
	for _, i := range ns.Records() {
		rr, ok := ix.RR(i).(*dns.NS)
		if !ok {
			continue
		}
		t := lowerName(rr.Ns)
		if !under(t, origin) {
			continue // out of bailiwick: resolved elsewhere
		}
		if hasAddress(ix.Node(t)) {
			continue
		}
		switch {
		case n.Cut && under(t, n.Name):
			col.at(nil, i, "missing-glue", n.Name, "NS",
				"name server %s is inside the delegation but has no glue (A/AAAA)", t)
		case ix.cutAtOrAbove(t) != nil:
			// Sibling glue: the name server sits in another
			// delegation and resolves through it (RFC 9471).
		default:
			col.at(nil, i, "missing-address", n.Name, "NS",
				"name server %s is in this zone but has no A/AAAA record", t)
		}
	}
}

func cutName(n *Node) string {
	if n == nil {
		return "above"
	}
	return n.Name
}
