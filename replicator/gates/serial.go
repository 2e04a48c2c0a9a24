package gates

// The serial gate traces to INCIDENTS.md §3, RIPE NCC June 2012: after a
// reload from an incidental backup, a race set wrong SOA serials and
// incomplete zones propagated under them. A secondary only transfers a
// serial it sees as newer (RFC 1982 arithmetic), so a serial that goes
// back strands the secondaries on the old data, and a serial that stays
// the same while the content changes means two different zones answer
// under one version: nobody can tell which one a server holds. Both are
// refused; the same serial with the same content digest is the same
// version and passes, saying so.

import (
	"context"
	"fmt"

	"github.com/regdr/regdr/replicator/zone"
)

type serialGate struct{ c Config }

func (serialGate) Name() string { return GateSerial }

func (g serialGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	type ref struct {
		what string
		z    *zone.Zone
	}
	var refs []ref
	if in.Previous != nil {
		refs = append(refs, ref{"previous", in.Previous})
	}
	if in.Published != nil && (in.Previous == nil ||
		in.Published.Serial != in.Previous.Serial || in.Published.Digest != in.Previous.Digest) {
		refs = append(refs, ref{"published", in.Published})
	}
	if len(refs) == 0 {
		return skip(GateSerial, "first version: no previous serial to compare with")
	}
	col := newCollector(GateSerial, g.c, ix)
	origin := ix.Origin()
	c := in.Zone.Serial
	unchanged := false
	for _, r := range refs {
		p := r.z.Serial
		switch verdict := SerialVerdict(p, c, r.z.Digest == in.Zone.Digest); verdict {
		case SerialNewer:
		case SerialUnchanged:
			unchanged = true
		case SerialSameDifferent:
			col.at(nil, 0, "same-serial", origin, "SOA",
				"same serial, different content: serial %d equals the %s version's, but the content digest differs", c, r.what)
		case SerialUndefined:
			col.at(nil, 0, "serial-undefined", origin, "SOA",
				"serial %d is exactly 2^31 away from the %s version's %d: their order is undefined (RFC 1982)", c, r.what, p)
		default:
			col.at(nil, 0, "serial-regression", origin, "SOA",
				"serial regression: %d is not after the %s version's %d (RFC 1982); secondaries would keep the old zone", c, r.what, p)
		}
	}
	res := col.result(fmt.Sprintf("serial %d follows %d", c, refs[0].z.Serial))
	switch {
	case res.Status == StatusFail:
		res.Reason = col.list[0].Msg
	case unchanged:
		res.Reason = fmt.Sprintf("unchanged: serial %d and content are those of the %s version", c, refs[0].what)
	}
	return res
}

// Verdicts of SerialVerdict.
const (
	SerialNewer         = "newer"
	SerialUnchanged     = "unchanged"
	SerialSameDifferent = "same-serial-different-content"
	SerialUndefined     = "undefined"
	SerialRegression    = "regression"
)

// SerialVerdict classifies candidate serial c against a reference serial p
// in RFC 1982 sequence space; sameContent says whether the two versions
// have the same digest. Only SerialNewer and SerialUnchanged are accepted.
func SerialVerdict(p, c uint32, sameContent bool) string {
	switch {
	case c == p && sameContent:
		return SerialUnchanged
	case c == p:
		return SerialSameDifferent
	case zone.SerialLess(p, c):
		return SerialNewer
	case c-p == 1<<31:
		return SerialUndefined
	default:
		return SerialRegression
	}
}
