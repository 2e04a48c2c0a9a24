package gates

// The required gate traces to INCIDENTS.md §3, RIPE NCC June 2012: after
// the reload, 31 RFC 2317 classless delegations had lost their CNAME
// records, and nobody noticed for five days because totals looked normal:
// a few dozen CNAMEs are noise in a count of thousands of delegations.
// Record classes that are rare but critical are therefore checked one by
// one against the previous version: every RFC 2317 CNAME must still be
// there, and every delegation that had DS records must still have them,
// unless the registry database says it removed them on purpose. A DS that
// vanishes silently turns a signed delegation insecure (or, with a stale
// cache, bogus). Operators can also name records that must always exist
// (the registry's own nic.<tld>., the apex of a reverse block).

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

type requiredGate struct{ c Config }

func (requiredGate) Name() string { return GateRequired }

// requirement is one entry of Config.RequiredNames.
type requirement struct {
	name   string // lower case, absolute
	suffix bool   // "*.name": some owner strictly below name must exist
}

func parseRequired(s string) (requirement, error) {
	if !dns.IsFqdn(s) {
		return requirement{}, fmt.Errorf("required name %q is not absolute (missing trailing dot?)", s)
	}
	r := requirement{name: s}
	if strings.HasPrefix(s, "*.") {
		r = requirement{name: s[2:], suffix: true}
	}
	if _, ok := dns.IsDomainName(r.name); !ok {
		return requirement{}, fmt.Errorf("required name %q is not a domain name", s)
	}
	r.name = lowerName(r.name)
	return r, nil
}

func (g requiredGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	col := newCollector(GateRequired, g.c, ix)
	origin := ix.Origin()

	present := 0
	for _, s := range g.c.RequiredNames {
		r, err := parseRequired(s)
		if err != nil {
			col.add(Finding{Kind: "bad-requirement", Name: s, Msg: err.Error()})
			continue
		}
		if exists(ix, r) {
			present++
			continue
		}
		what := "required name is missing"
		if r.suffix {
			what = "no name below " + r.name + " (required by " + s + ")"
		}
		if !under(r.name, origin) && !under(origin, r.name) {
			what += fmt.Sprintf("; it is outside the zone %s and can never be present", origin)
		}
		f := Finding{Kind: "required-missing", Name: r.name, Msg: what}
		if p := ix.Previous(); p != nil {
			if n := p.Node(r.name); n != nil {
				f.File, f.Line = p.Loc(n.First)
			}
		}
		col.add(f)
	}

	base, what := ix.Previous(), "previous"
	if base == nil {
		base, what = ix.Published(), "published"
	}
	removed := normalizedSet(in.RemovedByRegistry)
	var cnames, dsSets int
	if base != nil {
		// Incremental (incremental.go): only names that changed can have
		// lost a record; the counts come from the whole previous version.
		look := base.Nodes()
		d := ix.diff
		if d != nil && base == ix.previous {
			look = append([]*Node(nil), d.gone...)
			for _, n := range d.changed {
				if bn := base.Node(n.Name); bn != nil {
					look = append(look, bn)
				}
			}
			for _, n := range base.cnames {
				if !n.Below && rfc2317(base, n) {
					cnames++
				}
			}
			dsSets = base.dsCuts
		}
		for k, n := range look {
			if k%4096 == 0 && ctx.Err() != nil {
				return cancelled(GateRequired, ctx.Err())
			}
			if n.Below {
				continue
			}
			if cs := n.Set(dns.TypeCNAME); cs != nil && rfc2317(base, n) {
				if d == nil {
					cnames++
				}
				if !ix.Node(n.Name).Has(dns.TypeCNAME) && !removed[n.Name] {
					col.at(base, cs.Records()[0], "rfc2317-cname-lost", n.Name, "CNAME",
						"RFC 2317 CNAME to %s is in the %s version but missing here, and the registry did not remove it", cnameTarget(base, n), what)
				}
			}
			if ds := n.Set(dns.TypeDS); n.Cut && ds != nil {
				if d == nil {
					dsSets++
				}
				cn := ix.Node(n.Name)
				if cn != nil && cn.Cut && !cn.Below && !cn.Has(dns.TypeDS) && !removed[n.Name] {
					col.at(base, ds.Records()[0], "ds-lost", n.Name, "DS",
						"delegation kept its NS but lost its DS records (in the %s version); the registry did not remove them: the delegation silently becomes insecure", what)
				}
			}
		}
	}

	pass := "no required names configured"
	if present > 0 {
		pass = fmt.Sprintf("%s present", plural(present, "required name", "required names"))
	}
	if base != nil {
		pass += fmt.Sprintf("; the %s version's %s and %s kept", what,
			plural(cnames, "RFC 2317 CNAME", "RFC 2317 CNAMEs"), plural(dsSets, "DS set", "DS sets"))
	}
	res := col.result(pass)
	if res.Status == StatusFail {
		res.Reason = col.summary()
	}
	return res
}

// exists: an exact name holds records; a suffix has some name below it.
func exists(ix *Index, r requirement) bool {
	if !r.suffix {
		n := ix.Node(r.name)
		return n != nil && len(n.Sets) > 0 && !n.NSEC3Owner
	}
	for _, n := range ix.Nodes() {
		if !n.NSEC3Owner && strictlyUnder(n.Name, r.name) {
			return true
		}
	}
	return false
}

// normalizedSet returns m with lower-case absolute keys (m itself when it
// already has them). A nil map stays nil: "unknown", nothing excused.
func normalizedSet(m map[string]bool) map[string]bool {
	clean := true
	for k := range m {
		if lowerName(k) != k {
			clean = false
			break
		}
	}
	if clean {
		return m
	}
	out := make(map[string]bool, len(m))
	for k, v := range m {
		if v {
			out[lowerName(k)] = true
		}
	}
	return out
}

// cnameTarget is the target of the CNAME at n, as a key ("" if none).
func cnameTarget(x *Index, n *Node) string {
	if cs := n.Set(dns.TypeCNAME); cs != nil {
		if c, ok := x.RR(cs.Records()[0]).(*dns.CNAME); ok {
			return lowerName(c.Target)
		}
	}
	return ""
}

// rfc2317 reports whether the CNAME at n is a classless reverse
// delegation (RFC 2317) or part of a reverse zone.
func rfc2317(x *Index, n *Node) bool {
	if isReverse(n.Name) || hasClasslessLabel(n.Name) {
		return true
	}
	return hasClasslessLabel(cnameTarget(x, n))
}
