package gates

import (
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Index is one zone version arranged for the gates: every owner name with
// its RRsets and their signatures, the delegation points, and which names
// are occluded. It is built in one pass over the zone's owner names and
// shared by all gates of a Run; it must not be modified after NewIndex
// returns.
//
// Records are referred to by their position in Zone() (Zone().RR(i);
// int32: a zone has far fewer than 2^31 records). The index of a
// million-delegation zone has five million of them, so it holds no
// per-name or per-RRset allocations: every RRset's records are a window
// of one shared array, every node a value in one shared slice, and names
// are found by binary search in the zone's sorted owner names instead of
// a map.
type Index struct {
	zone    *zone.Zone
	origin  string
	nodes   []Node  // every name inside the zone, in the zone's name order
	list    []*Node // the same, as pointers (what Nodes returns)
	perm    []int32 // record numbers: per node, each RRset's records then its RRSIGs, then orphan RRSIGs
	apex    *Node
	dels    []*Node // delegation points that are not themselves occluded
	outside []int32 // records whose owner is outside the zone
	sigs    int     // RRSIG records inside the zone
	cnames  []*Node // the nodes with a CNAME
	dsCuts  int     // delegation points, not occluded, with DS
	// NSEC3 records, and those with the opt-out flag (read from the wire)
	nsec3Count, nsec3OptOut int

	previous, published *Index
	diff                *indexDiff // what differs from previous, for an incremental check; nil for a full one
}

// Node is everything at one owner name.
type Node struct {
	// Name is the owner name as zone.NameKey gives it: lower case,
	// absolute.
	Name string
	// Sets are the RRsets at Name, RRSIGs excluded (they are attached to
	// the set they cover), in order of first appearance.
	Sets []RRset
	// Orphans are RRSIGs at Name that cover a type with no RRset here.
	Orphans []int32
	// First is the first record at Name, for locating the name.
	First int32
	// Apex is the zone apex; Cut a delegation point (NS, not the apex);
	// Below a name under a delegation point (occluded: glue or worse).
	Apex, Cut, Below bool
	// NSEC3Owner: every RRset here is NSEC3, the name is a hashed owner
	// and not part of the zone's namespace proper.
	NSEC3Owner bool
}

// RRset is the records of one type at one name.
type RRset struct {
	Type uint16
	nrec int32
	all  []int32 // the records, then the RRSIGs covering Type at the same name
}

// Records are the set's records.
func (s *RRset) Records() []int32 { return s.all[:s.nrec:s.nrec] }

// Sigs are the RRSIGs at the same name covering Type.
func (s *RRset) Sigs() []int32 { return s.all[s.nrec:] }

// Set returns the RRset of type t at n, or nil.
func (n *Node) Set(t uint16) *RRset {
	if n == nil {
		return nil
	}
	for i := range n.Sets {
		if n.Sets[i].Type == t {
			return &n.Sets[i]
		}
	}
	return nil
}

// Has reports an RRset of type t at n.
func (n *Node) Has(t uint16) bool { return n.Set(t) != nil }

// hasSigs reports any RRSIG at n.
func (n *Node) hasSigs() bool {
	if len(n.Orphans) > 0 {
		return true
	}
	for i := range n.Sets {
		if len(n.Sets[i].Sigs()) > 0 {
			return true
		}
	}
	return false
}

// NewIndex indexes z. It never fails: anything odd (names outside the
// zone, signatures without data) is recorded for the gates to report.
func NewIndex(z *zone.Zone) *Index {
	ix := &Index{
		zone:   z,
		origin: zone.NameKey(z.Origin),
		nodes:  make([]Node, 0, z.Names()),
		perm:   make([]int32, 0, z.Len()),
	}
	type rec struct {
		i       int32
		t, cov  uint16
		claimed bool
	}
	var (
		recs  []rec
		types []uint16
		sets  []RRset // the current slab; Node.Sets are windows of it
	)
	for k := range z.Names() {
		name, start, end := z.Name(k)
		if !under(name, ix.origin) {
			for i := start; i < end; i++ {
				ix.outside = append(ix.outside, int32(i))
			}
			continue
		}
		apex := name == ix.origin
		recs, types = recs[:0], types[:0]
		if apex {
			recs = append(recs, rec{i: 0, t: dns.TypeSOA})
			types = append(types, dns.TypeSOA)
		}
		for i := start; i < end; i++ {
			r := rec{i: int32(i), t: z.Type(i)}
			if r.t == dns.TypeRRSIG {
				r.cov = z.Covered(i)
				ix.sigs++
			} else if !slices.Contains(types, r.t) {
				types = append(types, r.t)
			}
			recs = append(recs, r)
		}
		if len(sets)+len(types) > cap(sets) {
			sets = make([]RRset, 0, max(4096, len(types)))
		}
		s0 := len(sets)
		for _, t := range types {
			off := len(ix.perm)
			for _, r := range recs {
				if r.t == t {
					ix.perm = append(ix.perm, r.i)
				}
			}
			nrec := int32(len(ix.perm) - off)
			for j := range recs {
				if r := &recs[j]; r.t == dns.TypeRRSIG && r.cov == t {
					ix.perm = append(ix.perm, r.i)
					r.claimed = true
				}
			}
			sets = append(sets, RRset{Type: t, nrec: nrec, all: ix.perm[off:len(ix.perm):len(ix.perm)]})
		}
		n := Node{Name: name, First: recs[0].i, Apex: apex}
		if len(types) > 0 {
			n.Sets = sets[s0:len(sets):len(sets)]
		}
		off := len(ix.perm)
		for _, r := range recs {
			if r.t == dns.TypeRRSIG && !r.claimed {
				ix.perm = append(ix.perm, r.i)
			}
		}
		if len(ix.perm) > off {
			n.Orphans = ix.perm[off:len(ix.perm):len(ix.perm)]
		}
		n.Cut = !apex && n.Has(dns.TypeNS)
		n.NSEC3Owner = len(n.Sets) > 0
		for i := range n.Sets {
			if n.Sets[i].Type != dns.TypeNSEC3 {
				n.NSEC3Owner = false
				break
			}
		}
		ix.nodes = append(ix.nodes, n)
	}
	ix.list = make([]*Node, len(ix.nodes))
	for i := range ix.nodes {
		n := &ix.nodes[i]
		ix.list[i] = n
		if n.Apex {
			ix.apex = n
		}
	}
	for _, n := range ix.list {
		if n.Has(dns.TypeCNAME) {
			ix.cnames = append(ix.cnames, n)
		}
		if s := n.Set(dns.TypeNSEC3); s != nil {
			for _, i := range s.Records() {
				ix.nsec3Count++
				if raw := z.Raw(int(i)); len(raw) > 11 && raw[11]&1 != 0 { // RDATA: hash algorithm, flags
					ix.nsec3OptOut++
				}
			}
		}
		// Only names two or more labels below the apex can be below a cut.
		for p := parentName(n.Name); p != "" && strictlyUnder(p, ix.origin); p = parentName(p) {
			if a := ix.Node(p); a != nil && a.Cut {
				n.Below = true
				break
			}
		}
		if n.Cut && !n.Below {
			ix.dels = append(ix.dels, n)
		}
		if n.Cut && !n.Below && n.Has(dns.TypeDS) {
			ix.dsCuts++
		}
	}
	return ix
}

// Zone is the indexed version.
func (ix *Index) Zone() *zone.Zone { return ix.zone }

// Origin is the zone apex, lower case and absolute.
func (ix *Index) Origin() string { return ix.origin }

// Node returns the node at name (as zone.NameKey gives it), or nil.
func (ix *Index) Node(name string) *Node {
	i, ok := slices.BinarySearchFunc(ix.nodes, name, func(n Node, name string) int { return strings.Compare(n.Name, name) })
	if !ok {
		return nil
	}
	return &ix.nodes[i]
}

// Nodes returns every node inside the zone, in zone order. Do not modify.
func (ix *Index) Nodes() []*Node { return ix.list }

// Apex is the apex node (nil only for a zone without records at its apex,
// which zone.Zone rules out).
func (ix *Index) Apex() *Node { return ix.apex }

// Delegations are the delegation points that are not themselves below
// another one, in zone order. Do not modify.
func (ix *Index) Delegations() []*Node { return ix.dels }

// Outside lists records whose owner is not at or below the origin.
func (ix *Index) Outside() []int32 { return ix.outside }

// Previous and Published are the indexes of Input.Previous and
// Input.Published (nil when those are nil).
func (ix *Index) Previous() *Index  { return ix.previous }
func (ix *Index) Published() *Index { return ix.published }

// RR returns record i.
func (ix *Index) RR(i int32) dns.RR { return ix.zone.RR(int(i)) }

// Loc returns where record i came from: file and line, or "" and 0.
func (ix *Index) Loc(i int32) (string, int) {
	z := ix.zone
	if z.File == "" {
		return "", 0
	}
	// Line is 0 for a record without a source line (a zone built from
	// records and given a File afterwards): no location then either.
	line := z.Line(int(i))
	if line == 0 {
		return "", 0
	}
	return z.File, line
}

// cutAtOrAbove returns the closest delegation point at or above name
// (excluding the apex), or nil. name need not exist.
func (ix *Index) cutAtOrAbove(name string) *Node {
	for p := name; p != "" && strictlyUnder(p, ix.origin); p = parentName(p) {
		if a := ix.Node(p); a != nil && a.Cut {
			return a
		}
	}
	return nil
}

// indexDiff is what differs between an index and its previous version.
type indexDiff struct {
	// changed are the nodes of the new version that are new or differ
	// from the previous one's (a record added, removed or changed, TTL
	// included, or the node's place: apex, cut, occluded), in name
	// order; gone are the previous version's nodes with no counterpart.
	changed, gone []*Node
	// names holds the names of both.
	names map[string]bool
}

// diffIndex compares every node of prev and ix, walking both in name
// order: a pass over the names, without decoding a record.
func diffIndex(prev, ix *Index) *indexDiff {
	d := &indexDiff{names: map[string]bool{}}
	pz, z := prev.Zone(), ix.Zone()
	i, j := 0, 0
	for i < len(prev.nodes) || j < len(ix.nodes) {
		switch {
		case j == len(ix.nodes) || i < len(prev.nodes) && prev.nodes[i].Name < ix.nodes[j].Name:
			d.gone = append(d.gone, &prev.nodes[i])
			i++
		case i == len(prev.nodes) || ix.nodes[j].Name < prev.nodes[i].Name:
			d.changed = append(d.changed, &ix.nodes[j])
			j++
		default:
			if !sameNode(pz, &prev.nodes[i], z, &ix.nodes[j]) {
				d.changed = append(d.changed, &ix.nodes[j])
			}
			i++
			j++
		}
	}
	for _, n := range d.changed {
		d.names[n.Name] = true
	}
	for _, n := range d.gone {
		d.names[n.Name] = true
	}
	return d
}

func sameNode(az *zone.Zone, a *Node, bz *zone.Zone, b *Node) bool {
	if a.Apex != b.Apex || a.Cut != b.Cut || a.Below != b.Below || a.NSEC3Owner != b.NSEC3Owner ||
		len(a.Sets) != len(b.Sets) || len(a.Orphans) != len(b.Orphans) {
		return false
	}
	same := func(x, y []int32) bool {
		if len(x) != len(y) {
			return false
		}
		for k := range x {
			if !zone.SameRecord(az, int(x[k]), bz, int(y[k])) {
				return false
			}
		}
		return true
	}
	for k := range a.Sets {
		sa, sb := &a.Sets[k], &b.Sets[k]
		if sa.Type != sb.Type || sa.nrec != sb.nrec || !same(sa.all, sb.all) {
			return false
		}
	}
	return same(a.Orphans, b.Orphans)
}
