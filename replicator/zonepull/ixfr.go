package zonepull

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// ErrNotNewer is returned (wrapped) by PullIXFR when the primary's
// version is older than the one asked from: nothing to apply, and a
// primary going backwards is worth a line in the log.
var ErrNotNewer = errors.New("primary's serial is not newer")

// PullIXFR asks the primary at addr for what changed since have (IXFR,
// RFC 1995, over TCP, TSIG as for Pull) and returns the version the
// changes lead to, built with zone.Apply: on a large zone a thousand
// changed delegations arrive and apply in milliseconds where a whole
// transfer takes seconds, and only the changed names are checked again
// (gates.Input.PreviousPassed). A primary may answer with the whole zone
// instead (RFC 1995 §4: no history kept); that zone is returned. When it
// has nothing newer it answers with its SOA alone, and have itself is
// returned. Whatever the answer, each step must start from the serial the
// last one reached, or the transfer is refused. incremental says whether
// the answer was differences (or "nothing newer") rather than the whole
// zone.
func PullIXFR(ctx context.Context, addr, origin, tsigName, secret string, have *zone.Zone) (z *zone.Zone, incremental bool, err error) {
	origin = dns.CanonicalName(origin)
	if have == nil || dns.CanonicalName(have.Origin) != origin {
		return nil, false, fmt.Errorf("pull %s from %s by IXFR: no version of the zone to ask changes from", origin, addr)
	}
	z, incremental, err = pullIXFR(ctx, addr, origin, tsigName, secret, have)
	if err != nil {
		return nil, false, fmt.Errorf("pull %s from %s by IXFR from serial %d: %w", origin, addr, have.Serial, err)
	}
	return z, incremental, nil
}

func pullIXFR(ctx context.Context, addr, origin, tsigName, secret string, have *zone.Zone) (*zone.Zone, bool, error) {
	q := new(dns.Msg).SetIxfr(origin, have.Serial, "", "")
	// SetIxfr puts an SOA in the authority section with empty names; the
	// serial is what the primary reads (RFC 1995 §3), the rest is ours.
	q.Ns = []dns.RR{have.SOA()}
	r := &ixfrReader{origin: origin, have: have.Serial}
	if err := transfer(ctx, addr, origin, tsigName, secret, q, r.step); err != nil {
		return nil, false, err
	}
	return r.assemble(have)
}

// ixfrReader follows an IXFR answer record by record as it arrives (RFC
// 1995 §4): the primary's SOA alone (nothing newer), the whole zone (read
// on as an AXFR, packed as it comes), or differences, kept to be applied.
type ixfrReader struct {
	origin      string
	have        uint32
	newest      uint32
	n           int
	upToDate    bool        // the SOA alone
	incremental bool        // differences, not the whole zone
	adding      bool        // in the added records of a difference
	reached     uint32      // serial the current difference leads to
	rrs         []dns.RR    // the answer, while it is differences
	axfr        *axfrReader // the answer, once it is the whole zone
}

func (r *ixfrReader) step(rr dns.RR, lastInMessage bool) (bool, error) {
	r.n++
	soa, isSOA := rr.(*dns.SOA)
	switch {
	case r.n == 1:
		r.newest = soa.Serial // transfer checked it is the zone's SOA
		r.rrs = append(r.rrs, rr)
		if lastInMessage && !zone.SerialLess(r.have, soa.Serial) {
			r.upToDate = true
			return true, nil
		}
		return false, nil
	case r.n == 2 && isSOA && soa.Serial == r.have && r.have != r.newest:
		r.incremental = true
	case r.n == 2:
		// The whole zone: on as an AXFR.
		r.axfr = newAXFRReader(r.origin)
		if _, err := r.axfr.step(r.rrs[0], false); err != nil {
			return false, err
		}
		r.rrs = nil
		return r.axfr.step(rr, lastInMessage)
	case r.axfr != nil:
		return r.axfr.step(rr, lastInMessage)
	case !isSOA:
	case !r.adding:
		r.adding, r.reached = true, soa.Serial
	case soa.Serial == r.newest && r.reached == r.newest:
		r.rrs = append(r.rrs, rr)
		return true, nil
	case soa.Serial == r.reached:
		r.adding = false // the next difference
	default:
		return false, fmt.Errorf("%w: IXFR difference starts from serial %d, the previous one reached %d", ErrBadTransfer, soa.Serial, r.reached)
	}
	r.rrs = append(r.rrs, rr)
	return false, nil
}

// assemble turns the complete answer into the version it leads to from
// have.
func (r *ixfrReader) assemble(have *zone.Zone) (*zone.Zone, bool, error) {
	switch {
	case r.upToDate:
		if r.newest != have.Serial {
			return nil, false, fmt.Errorf("%w: it serves %d, we have %d", ErrNotNewer, r.newest, have.Serial)
		}
		return have, true, nil
	case r.axfr != nil:
		z, err := r.axfr.zone()
		return z, false, err
	case !r.incremental:
		return nil, false, fmt.Errorf("%w: IXFR answer ended early", ErrTruncated)
	}
	// SOA(new) [SOA(old) deleted... SOA(next) added...]... SOA(new)
	rrs, newest := r.rrs, r.newest
	z := have
	body := rrs[1 : len(rrs)-1]
	for len(body) > 0 {
		from := body[0].(*dns.SOA)
		if from.Serial != z.Serial {
			return nil, false, fmt.Errorf("%w: a difference starts from serial %d, the version reached is %d", ErrBadTransfer, from.Serial, z.Serial)
		}
		i := 1
		for i < len(body) && body[i].Header().Rrtype != dns.TypeSOA {
			i++
		}
		del := body[:i]
		j := i + 1
		for j < len(body) && body[j].Header().Rrtype != dns.TypeSOA {
			j++
		}
		if i >= len(body) {
			return nil, false, fmt.Errorf("%w: a difference from serial %d has no new SOA", ErrBadTransfer, from.Serial)
		}
		add := body[i:j]
		next, err := zone.Apply(z, del, add)
		if err != nil {
			return nil, false, fmt.Errorf("%w: apply the difference from serial %d: %v", ErrBadTransfer, from.Serial, err)
		}
		z, body = next, body[j:]
	}
	if z.Serial != newest {
		return nil, false, fmt.Errorf("%w: the differences reach serial %d, the primary announced %d", ErrBadTransfer, z.Serial, newest)
	}
	return z, true, nil
}
