package gates

import (
	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Index is one zone version arranged for the gates: every owner name with
// its RRsets and their signatures, the delegation points, and which names
// are occluded. It is built in one pass over the records and shared by all
// gates of a Run; it must not be modified after NewIndex returns.
//
// Records are referred to by their position in Zone().Records (int32: a
// zone has far fewer than 2^31 records, and the index of a million
// delegations holds several million of them).
type Index struct {
	zone    *zone.Zone
	origin  string
	nodes   map[string]*Node
	list    []*Node // every node inside the zone, in order of its first record
	apex    *Node
	dels    []*Node // delegation points that are not themselves occluded
	outside []int32 // records whose owner is outside the zone
	sigs    int     // RRSIG records inside the zone

	previous, published *Index
}

// Node is everything at one owner name.
type Node struct {
	// Name is the owner name, lower case and absolute.
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
	Type    uint16
	Records []int32
	// Sigs are the RRSIGs at the same name covering Type.
	Sigs []int32
}

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
		if len(n.Sets[i].Sigs) > 0 {
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
		origin: z.Origin,
		nodes:  make(map[string]*Node, len(z.Records)/3+1),
	}
	// Nodes come from chunks: one allocation per 1024 names instead of
	// one per name.
	var slab []Node
	newNode := func(name string, i int32) *Node {
		if len(slab) == cap(slab) {
			slab = make([]Node, 0, 1024)
		}
		slab = append(slab, Node{Name: name, First: i})
		n := &slab[len(slab)-1]
		ix.nodes[name] = n
		ix.list = append(ix.list, n)
		return n
	}

	var cur *Node
	for i, rr := range z.Records {
		if rr == nil {
			continue
		}
		i := int32(i)
		h := rr.Header()
		name := lowerName(h.Name)
		if cur == nil || cur.Name != name {
			cur = ix.nodes[name]
			if cur == nil {
				if !under(name, ix.origin) {
					ix.outside = append(ix.outside, i)
					continue
				}
				cur = newNode(name, i)
			}
		}
		if h.Rrtype == dns.TypeRRSIG {
			ix.sigs++
			// Attached to its RRset once all records are in: the
			// set may come later in the zone.
			cur.Orphans = append(cur.Orphans, i)
			continue
		}
		s := cur.Set(h.Rrtype)
		if s == nil {
			cur.Sets = append(cur.Sets, RRset{Type: h.Rrtype})
			s = &cur.Sets[len(cur.Sets)-1]
		}
		s.Records = append(s.Records, i)
	}

	ix.apex = ix.nodes[ix.origin]
	for _, n := range ix.list {
		n.Apex = n == ix.apex
		n.Cut = !n.Apex && n.Has(dns.TypeNS)
		if len(n.Orphans) > 0 {
			kept := n.Orphans[:0]
			for _, si := range n.Orphans {
				sig, ok := z.Records[si].(*dns.RRSIG)
				if s := n.Set(sigCovered(sig, ok)); ok && s != nil {
					s.Sigs = append(s.Sigs, si)
				} else {
					kept = append(kept, si)
				}
			}
			if len(kept) == 0 {
				kept = nil
			}
			n.Orphans = kept
		}
		n.NSEC3Owner = len(n.Sets) > 0
		for i := range n.Sets {
			if n.Sets[i].Type != dns.TypeNSEC3 {
				n.NSEC3Owner = false
				break
			}
		}
	}
	for _, n := range ix.list {
		for p := parentName(n.Name); p != "" && strictlyUnder(p, ix.origin); p = parentName(p) {
			if a := ix.nodes[p]; a != nil && a.Cut {
				n.Below = true
				break
			}
		}
		if n.Cut && !n.Below {
			ix.dels = append(ix.dels, n)
		}
	}
	return ix
}

func sigCovered(sig *dns.RRSIG, ok bool) uint16 {
	if !ok {
		return dns.TypeNone
	}
	return sig.TypeCovered
}

// Zone is the indexed version.
func (ix *Index) Zone() *zone.Zone { return ix.zone }

// Origin is the zone apex, lower case and absolute.
func (ix *Index) Origin() string { return ix.origin }

// Node returns the node at name (lower case, absolute), or nil.
func (ix *Index) Node(name string) *Node { return ix.nodes[name] }

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
func (ix *Index) RR(i int32) dns.RR { return ix.zone.Records[i] }

// Loc returns where record i came from: file and line, or "" and 0.
func (ix *Index) Loc(i int32) (string, int) {
	z := ix.zone
	if z.File == "" || int(i) >= len(z.Lines) {
		return "", 0
	}
	return z.File, z.Lines[i]
}

// cutAtOrAbove returns the closest delegation point at or above name
// (excluding the apex), or nil. name need not exist.
func (ix *Index) cutAtOrAbove(name string) *Node {
	for p := name; p != "" && strictlyUnder(p, ix.origin); p = parentName(p) {
		if a := ix.nodes[p]; a != nil && a.Cut {
			return a
		}
	}
	return nil
}
