package zoneserve

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Envelope limits for outgoing transfers. Each message must stay under the
// 64 KiB TCP message limit with its TSIG; miekg packs envelopes without
// name compression, so the byte budget counts uncompressed lengths. A few
// hundred RRs per message keeps the per-message TSIG and syscall cost low
// without making one slow message hold a large buffer.
const (
	maxEnvelopeRRs   = 300
	maxEnvelopeBytes = 32 * 1024
)

// tsigFudge is the allowed clock difference in signatures we create; 300 s
// is the RFC 8945 §10 recommendation.
const tsigFudge = 300

// ServeDNS implements dns.Handler. miekg has already verified any TSIG on
// the request (w.TsigStatus) with the keyring, and refused opcodes other
// than QUERY and NOTIFY with NOTIMP.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	from := addrPort(w.RemoteAddr())
	if len(req.Question) != 1 {
		s.reply(w, req, dns.RcodeFormatError, nil, false)
		return
	}
	q := req.Question[0]
	signed := false
	if t := req.IsTsig(); t != nil {
		if err := w.TsigStatus(); err != nil {
			// Unsigned REFUSED: we cannot sign with a key we do not
			// hold, and an answer signed with another key would tell
			// the sender nothing it can verify.
			s.log.Warn("refused: TSIG did not verify", "from", from.String(), "key", t.Hdr.Name,
				"opcode", dns.OpcodeToString[req.Opcode], "qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "err", err)
			s.reply(w, req, dns.RcodeRefused, nil, false)
			return
		}
		signed = true
	}

	switch {
	case req.Opcode == dns.OpcodeNotify:
		s.serveNotify(w, req, q, signed, from)
	case req.Opcode != dns.OpcodeQuery, q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		s.reply(w, req, dns.RcodeRefused, nil, signed)
	case q.Qtype == dns.TypeSOA:
		z := s.Zone(q.Name)
		if z == nil {
			s.reply(w, req, dns.RcodeRefused, nil, signed)
			return
		}
		s.reply(w, req, dns.RcodeSuccess, []dns.RR{z.RR(0)}, signed)
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		s.serveTransfer(w, req, q, signed, from)
	default:
		s.reply(w, req, dns.RcodeRefused, nil, signed)
	}
}

func (s *Server) serveTransfer(w dns.ResponseWriter, req *dns.Msg, q dns.Question, signed bool, from netip.AddrPort) {
	kind := dns.TypeToString[q.Qtype]
	z := s.Zone(q.Name)
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	switch {
	case !signed:
		s.log.Warn("refused: transfer without TSIG", "from", from.String(), "type", kind, "zone", q.Name)
		s.reply(w, req, dns.RcodeRefused, nil, false)
		return
	case z == nil:
		s.log.Warn("refused: transfer of a zone not served here", "from", from.String(), "type", kind, "zone", q.Name)
		s.reply(w, req, dns.RcodeRefused, nil, true)
		return
	case !tcp && q.Qtype == dns.TypeIXFR:
		// RFC 1995 §2: a reply that does not fit UDP is the current SOA
		// alone, telling the client to retry over TCP.
		s.reply(w, req, dns.RcodeSuccess, []dns.RR{z.RR(0)}, true)
		return
	case !tcp:
		s.reply(w, req, dns.RcodeRefused, nil, true)
		return
	}
	var envs []*dns.Envelope
	records, how := z.Len()+1, "full"
	if q.Qtype == dns.TypeIXFR {
		var have *dns.SOA
		if len(req.Ns) == 1 {
			have, _ = req.Ns[0].(*dns.SOA)
		}
		if have == nil {
			s.reply(w, req, dns.RcodeFormatError, nil, true)
			return
		}
		// RFC 1995 §2: a client at (or, by RFC 1982, past) our serial
		// gets our SOA alone: nothing to send.
		if !zone.SerialLess(have.Serial, z.Serial) {
			s.reply(w, req, dns.RcodeSuccess, []dns.RR{z.RR(0)}, true)
			return
		}
		if seq := s.ixfr(z, have.Serial, from); seq != nil {
			envs = packEnvelopes(seq)
			records, how = len(seq), fmt.Sprintf("incremental from %d", have.Serial)
		}
	}
	start := time.Now()
	var (
		ch       chan *dns.Envelope
		messages = new(atomic.Int64)
	)
	if envs == nil {
		// The whole zone, decoded a few messages ahead of the socket:
		// a million-delegation zone decoded at once would be gigabytes
		// per transfer.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch = streamEnvelopes(ctx, z, messages)
	} else {
		c := make(chan *dns.Envelope, len(envs))
		for _, e := range envs {
			c <- e
		}
		close(c)
		ch = c
		messages.Store(int64(len(envs)))
	}
	// z is this transfer's snapshot: SetZone swaps the map, never z.
	if err := new(dns.Transfer).Out(w, req, ch); err != nil {
		s.log.Warn("transfer out failed", "from", from.String(), "type", kind, "zone", z.Origin,
			"serial", z.Serial, "key", req.IsTsig().Hdr.Name, "err", err)
		w.Close()
		return
	}
	s.log.Info("transfer out", "from", from.String(), "type", kind, "answer", how, "zone", z.Origin, "serial", z.Serial,
		"key", req.IsTsig().Hdr.Name, "records", records, "messages", messages.Load(), "duration", time.Since(start))
}

// ixfr is the RFC 1995 §4 answer taking a client from serial have to z in
// one condensed step: SOA(new), SOA(old), deleted..., SOA(new), added...,
// SOA(new). nil means "send the whole zone".
func (s *Server) ixfr(z *zone.Zone, have uint32, from netip.AddrPort) []dns.RR {
	if s.opts.History == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), diffTimeout)
	defer cancel()
	oldSOA, deleted, added, ok, err := s.opts.History.Diff(ctx, z.Origin, have, z)
	if err != nil {
		s.log.Warn("IXFR: no difference, sending the whole zone", "from", from.String(), "zone", z.Origin,
			"client_serial", have, "serial", z.Serial, "err", err)
		return nil
	}
	if !ok || oldSOA == nil || oldSOA.Serial != have || len(deleted)+len(added)+4 > z.Len()+1 {
		return nil
	}
	soa := z.RR(0)
	seq := make([]dns.RR, 0, len(deleted)+len(added)+4)
	seq = append(seq, soa, oldSOA)
	seq = append(seq, deleted...)
	seq = append(seq, soa)
	seq = append(seq, added...)
	return append(seq, soa)
}

// streamEnvelopes sends SOA, records..., SOA (RFC 5936 §2.2) in messages on a channel, built as the
// transfer takes them, until ctx ends; n counts the messages.
func streamEnvelopes(ctx context.Context, z *zone.Zone, n *atomic.Int64) chan *dns.Envelope {
	ch := make(chan *dns.Envelope, 4)
	go func() {
		defer close(ch)
		send := func(e *dns.Envelope) bool {
			select {
			case ch <- e:
				n.Add(1)
				return true
			case <-ctx.Done():
				return false
			}
		}
		var p packer
		for i := 0; i <= z.Len(); i++ {
			if e := p.add(z.RR(i % z.Len())); e != nil && !send(e) {
				return
			}
		}
		send(p.cur)
	}()
	return ch
}

// packEnvelopes splits a transfer's records into messages.
func packEnvelopes(rrs []dns.RR) []*dns.Envelope {
	var out []*dns.Envelope
	var p packer
	for _, rr := range rrs {
		if e := p.add(rr); e != nil {
			out = append(out, e)
		}
	}
	return append(out, p.cur)
}

// packer fills messages up to the size and record limits.
type packer struct {
	cur  *dns.Envelope
	size int
}

// add puts rr in the current message, returning the previous one when rr
// did not fit.
func (p *packer) add(rr dns.RR) (full *dns.Envelope) {
	if p.cur == nil {
		p.cur = &dns.Envelope{}
	}
	n := dns.Len(rr)
	if len(p.cur.RR) > 0 && (len(p.cur.RR) == maxEnvelopeRRs || p.size+n > maxEnvelopeBytes) {
		full, p.cur, p.size = p.cur, &dns.Envelope{}, 0
	}
	p.cur.RR = append(p.cur.RR, rr)
	p.size += n
	return full
}

func (s *Server) serveNotify(w dns.ResponseWriter, req *dns.Msg, q dns.Question, signed bool, from netip.AddrPort) {
	if !signed {
		s.log.Warn("refused: NOTIFY without TSIG", "from", from.String(), "zone", q.Name)
		s.reply(w, req, dns.RcodeRefused, nil, false)
		return
	}
	if q.Qtype != dns.TypeSOA {
		s.reply(w, req, dns.RcodeFormatError, nil, true)
		return
	}
	origin := dns.CanonicalName(q.Name)
	var serial uint32
	for _, rr := range req.Answer {
		if soa, ok := rr.(*dns.SOA); ok && dns.CanonicalName(soa.Hdr.Name) == origin {
			serial = soa.Serial
		}
	}
	s.log.Info("NOTIFY received", "from", from.String(), "zone", origin, "serial", serial, "key", req.IsTsig().Hdr.Name)
	if s.opts.OnNotify != nil {
		s.opts.OnNotify(origin, serial, from)
	}
	s.reply(w, req, dns.RcodeSuccess, nil, true)
}

// reply answers req with rcode and answer, authoritative, TSIG-signed with
// the request's key when sign is set.
func (s *Server) reply(w dns.ResponseWriter, req *dns.Msg, rcode int, answer []dns.RR, sign bool) {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.Authoritative = rcode == dns.RcodeSuccess
	m.Answer = answer
	if t := req.IsTsig(); sign && t != nil {
		m.SetTsig(t.Hdr.Name, t.Algorithm, tsigFudge, time.Now().Unix())
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write reply failed", "to", w.RemoteAddr().String(), "err", err)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
