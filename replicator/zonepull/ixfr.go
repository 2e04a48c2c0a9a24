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
	cur := have.SOA()
	q.Ns = []dns.RR{cur}
	seq := &ixfrSequence{have: have.Serial}
	rrs, err := transfer(ctx, addr, origin, tsigName, secret, q, seq.complete)
	if err != nil {
		return nil, false, err
	}
	return assemble(origin, have, rrs, seq)
}

// assemble turns a complete IXFR answer (seq followed it) into the version
// it leads to from have.
func assemble(origin string, have *zone.Zone, rrs []dns.RR, seq *ixfrSequence) (*zone.Zone, bool, error) {
	newest := rrs[0].(*dns.SOA).Serial
	switch {
	case seq.upToDate:
		if newest != have.Serial {
			return nil, false, fmt.Errorf("%w: it serves %d, we have %d", ErrNotNewer, newest, have.Serial)
		}
		return have, true, nil
	case !seq.incremental:
		z, err := zone.FromRecords(origin, rrs[:len(rrs)-1])
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrBadTransfer, err)
		}
		return z, false, nil
	}
	// SOA(new) [SOA(old) deleted... SOA(next) added...]... SOA(new)
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

// ixfrSequence follows an IXFR answer record by record (RFC 1995 §4) to
// tell where it ends.
type ixfrSequence struct {
	have        uint32
	newest      uint32
	upToDate    bool // the SOA alone: nothing newer
	incremental bool // differences, not the whole zone
	adding      bool // in the added records of a difference
	reached     uint32
	seen        int
}

func (s *ixfrSequence) complete(rrs []dns.RR, lastInMessage bool) (bool, error) {
	for ; s.seen < len(rrs); s.seen++ {
		rr := rrs[s.seen]
		soa, isSOA := rr.(*dns.SOA)
		switch {
		case s.seen == 0:
			s.newest = soa.Serial
			if len(rrs) == 1 && lastInMessage && !zone.SerialLess(s.have, soa.Serial) {
				s.upToDate = true
				return true, nil
			}
		case s.seen == 1:
			switch {
			case isSOA && soa.Serial == s.have && s.have != s.newest:
				s.incremental = true
			case isSOA:
				return true, axfrCheck(rrs) // a zone of just its SOA
			}
		case !s.incremental:
			if isSOA {
				return true, axfrCheck(rrs)
			}
		case !isSOA:
		case !s.adding:
			s.adding, s.reached = true, soa.Serial
		case soa.Serial == s.newest && s.reached == s.newest:
			return true, nil
		case soa.Serial == s.reached:
			s.adding = false // the next difference
		default:
			return false, fmt.Errorf("%w: IXFR difference starts from serial %d, the previous one reached %d", ErrBadTransfer, soa.Serial, s.reached)
		}
	}
	return false, nil
}

// axfrCheck: a whole-zone answer must close with its opening SOA.
func axfrCheck(rrs []dns.RR) error {
	_, err := axfrComplete(rrs, true)
	return err
}
