// Package zonepull fetches zones from a primary: the standby site's agent
// pulls from the active site's hidden primary, and the lab and drills ask
// any server which serial it serves.
//
// Pull implements the AXFR client itself rather than use miekg's
// dns.Transfer: it must verify the TSIG chain as RFC 8945 defines it (Knot
// and BIND leave up to 99 messages in a row unsigned; miekg's client
// rejects that), check that the transfer ends with the SOA it began with,
// tell a refused transfer from a truncated one, and honour ctx throughout.
package zonepull

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Sentinel errors, wrapped with the primary's address and the zone.
var (
	// ErrRefused: the primary answered with an error rcode.
	ErrRefused = errors.New("primary refused")
	// ErrEmptyTransfer: the primary sent no records at all. A zone always
	// has at least its SOA, so this is never a valid zone (INCIDENTS.md,
	// RIPE NCC 2012: empty zones must not propagate).
	ErrEmptyTransfer = errors.New("empty zone transfer")
	// ErrTruncated: the transfer stopped before the closing SOA.
	ErrTruncated = errors.New("zone transfer truncated")
	// ErrBadTSIG: a message's TSIG is missing or does not verify.
	ErrBadTSIG = errors.New("zone transfer TSIG verification failed")
	// ErrBadTransfer: the message stream is not a valid AXFR response.
	ErrBadTransfer = errors.New("malformed zone transfer")
)

// idleTimeout bounds the wait for each message when ctx allows longer: a
// primary that stops sending mid-transfer is treated as gone after this,
// not after the caller's whole budget.
const idleTimeout = 10 * time.Second

// tsigFudge is the clock skew we allow in our own signature (RFC 8945 §10).
const tsigFudge = 300

// Pull transfers origin from the primary at addr (host:port) by AXFR over
// TCP, signed with the hmac-sha256 key tsigName/secret (base64). Every
// message's TSIG is verified (up to 99 consecutive unsigned messages are
// allowed and covered by the next signature, RFC 8945 §5.3.1; the first
// and the last must be signed). The transfer must start and end with the
// same SOA. The result is a parsed zone; gates are the caller's business.
func Pull(ctx context.Context, addr, origin, tsigName, secret string) (*zone.Zone, error) {
	origin = dns.CanonicalName(origin)
	z, err := pull(ctx, addr, origin, tsigName, secret)
	if err != nil {
		return nil, fmt.Errorf("pull %s from %s: %w", origin, addr, err)
	}
	return z, nil
}

func pull(ctx context.Context, addr, origin, tsigName, secret string) (*zone.Zone, error) {
	q := new(dns.Msg).SetAxfr(origin)
	a := newAXFRReader(origin)
	if err := transfer(ctx, addr, origin, tsigName, secret, q, a.step); err != nil {
		return nil, err
	}
	return a.zone()
}

// axfrReader builds the zone of an AXFR answer as its records arrive.
type axfrReader struct {
	open *dns.SOA
	b    *zone.Builder
}

func newAXFRReader(origin string) *axfrReader { return &axfrReader{b: zone.NewBuilder(origin)} }

// step takes the next record; done at the closing SOA.
func (a *axfrReader) step(rr dns.RR, _ bool) (bool, error) {
	soa, isSOA := rr.(*dns.SOA)
	if a.open == nil {
		a.open = soa // transfer checked it is the zone's SOA
		return false, a.b.Add(rr)
	}
	if !isSOA {
		if err := a.b.Add(rr); err != nil {
			return false, fmt.Errorf("%w: %v", ErrBadTransfer, err)
		}
		return false, nil
	}
	if soa.Serial != a.open.Serial || !dns.IsDuplicate(soa, a.open) {
		return false, fmt.Errorf("%w: closing SOA (serial %d) differs from the opening one (serial %d)", ErrBadTransfer, soa.Serial, a.open.Serial)
	}
	return true, nil
}

func (a *axfrReader) zone() (*zone.Zone, error) {
	z, err := a.b.Zone()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTransfer, err)
	}
	return z, nil
}

// transfer sends q (AXFR or IXFR, TSIG-signed) to addr over TCP and hands
// the answer's records to step one by one, as they arrive, until step says
// the last one closes it; that record must end a signed message. The first
// record must be origin's SOA.
func transfer(ctx context.Context, addr, origin, tsigName, secret string, q *dns.Msg, step func(rr dns.RR, lastInMessage bool) (bool, error)) error {
	if _, ok := dns.IsDomainName(origin); !ok {
		return fmt.Errorf("origin %q is not a domain name", origin)
	}
	if _, ok := dns.IsDomainName(tsigName); !ok || tsigName == "" {
		return fmt.Errorf("TSIG key name %q is not a domain name", tsigName)
	}
	rawSecret, err := base64.StdEncoding.DecodeString(secret)
	if err != nil || len(rawSecret) == 0 {
		return fmt.Errorf("TSIG key %s: secret is not valid base64", tsigName)
	}
	tsigName = dns.CanonicalName(tsigName)

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	dl := &deadlines{ctx: ctx, conn: conn}
	// Unblock any read or write at once when ctx is cancelled.
	stop := context.AfterFunc(ctx, dl.expire)
	defer stop()

	q.SetTsig(tsigName, dns.HmacSHA256, tsigFudge, time.Now().Unix())
	wire, macHex, err := dns.TsigGenerate(q, secret, "", false)
	if err != nil {
		return fmt.Errorf("sign %s query: %w", dns.TypeToString[q.Question[0].Qtype], err)
	}
	reqMAC, _ := hex.DecodeString(macHex)
	dl.next()
	if err := writeMsg(conn, wire); err != nil {
		return ctxErr(ctx, fmt.Errorf("send %s query: %w", dns.TypeToString[q.Question[0].Qtype], err))
	}

	stream := newTSIGStream(tsigName, rawSecret, reqMAC)
	var (
		n    int // records so far
		open *dns.SOA
		msgs int
	)
	progress := func() string { return fmt.Sprintf("after %d records in %d messages", n, msgs) }
	for {
		dl.next()
		raw, err := readMsg(conn)
		if err != nil {
			if err := ctxErr(ctx, err); errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return fmt.Errorf("%w %s", err, progress())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w: no message from the primary for %v %s", ErrTruncated, idleTimeout, progress())
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				if msgs == 0 {
					return fmt.Errorf("%w: connection closed before any answer", ErrEmptyTransfer)
				}
				return fmt.Errorf("%w: connection closed %s, before the closing SOA", ErrTruncated, progress())
			}
			return fmt.Errorf("read %s: %w", progress(), err)
		}
		msgs++
		m := new(dns.Msg)
		if err := m.Unpack(raw); err != nil {
			return fmt.Errorf("%w: message %d: %v", ErrBadTransfer, msgs, err)
		}
		if m.Id != q.Id || !m.Response || m.Opcode != dns.OpcodeQuery {
			return fmt.Errorf("%w: message %d is not an answer to our query (id %d, want %d)", ErrBadTransfer, msgs, m.Id, q.Id)
		}
		if t := m.IsTsig(); m.Rcode != dns.RcodeSuccess && (t == nil || t.Error != dns.RcodeSuccess) {
			// The usual refusal, unsigned (miekg, our zoneserve) or
			// with a TSIG error and no MAC (RFC 8945 §5.2.2, Knot,
			// BIND). We cannot verify it, but nothing is accepted
			// from it either.
			why := dns.RcodeToString[m.Rcode]
			if t != nil {
				why += ", TSIG " + dns.RcodeToString[int(t.Error)]
			}
			return fmt.Errorf("%w: %s (check the TSIG key name and secret, and that the primary serves the zone to this address)",
				ErrRefused, why)
		}
		signed, err := stream.verify(raw)
		if err != nil {
			return fmt.Errorf("%w: message %d: %v", ErrBadTSIG, msgs, err)
		}
		if m.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("%w: %s %s", ErrRefused, dns.RcodeToString[m.Rcode], progress())
		}
		if m.Truncated {
			return fmt.Errorf("%w: message %d has the TC bit set", ErrTruncated, msgs)
		}
		if msgs == 1 && len(m.Question) > 0 {
			qq := m.Question[0]
			if qq.Qtype != q.Question[0].Qtype || dns.CanonicalName(qq.Name) != origin {
				return fmt.Errorf("%w: answer is for %s %s", ErrBadTransfer, qq.Name, dns.TypeToString[qq.Qtype])
			}
		}
		if msgs == 1 && len(m.Answer) == 0 {
			return fmt.Errorf("%w: first message has no records", ErrEmptyTransfer)
		}
		for i, rr := range m.Answer {
			if open == nil {
				soa, isSOA := rr.(*dns.SOA)
				if !isSOA || dns.CanonicalName(soa.Hdr.Name) != origin {
					return fmt.Errorf("%w: transfer starts with %q, not the SOA of %s", ErrBadTransfer, rr.String(), origin)
				}
				open = soa
			}
			n++
			last := i == len(m.Answer)-1
			done, err := step(rr, last)
			switch {
			case err != nil:
				return err
			case !done:
				continue
			case !last:
				return fmt.Errorf("%w: %d records after the closing SOA", ErrBadTransfer, len(m.Answer)-1-i)
			case !signed:
				return fmt.Errorf("%w: message %d: the last message is not signed", ErrBadTSIG, msgs)
			}
			return nil
		}
	}
}

// QuerySerial asks the server at addr for origin's SOA (UDP, then TCP if
// the answer was truncated) and returns its serial. The answer must be
// authoritative: a cached answer from a resolver says nothing about what
// the server serves.
func QuerySerial(ctx context.Context, addr, origin string) (uint32, error) {
	origin = dns.CanonicalName(origin)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	m := new(dns.Msg).SetQuestion(origin, dns.TypeSOA)
	r, _, err := c.ExchangeContext(ctx, m, addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, addr)
	}
	if err != nil {
		return 0, fmt.Errorf("query SOA %s at %s: %w", origin, addr, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("query SOA %s at %s: %w: %s", origin, addr, ErrRefused, dns.RcodeToString[r.Rcode])
	}
	if !r.Authoritative {
		return 0, fmt.Errorf("query SOA %s at %s: answer is not authoritative", origin, addr)
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok && dns.CanonicalName(soa.Hdr.Name) == origin {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("query SOA %s at %s: no SOA for the zone in the answer", origin, addr)
}

// deadlines keeps conn's deadline at min(ctx deadline, now+idleTimeout)
// for each message, and in the past once ctx is done. The mutex orders
// next against the AfterFunc's expire: without it, next could re-arm a
// connection that expire had just stopped.
type deadlines struct {
	mu   sync.Mutex
	ctx  context.Context
	conn net.Conn
}

func (d *deadlines) next() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx.Err() != nil {
		d.conn.SetDeadline(time.Unix(1, 0))
		return
	}
	t := time.Now().Add(idleTimeout)
	if cd, ok := d.ctx.Deadline(); ok && cd.Before(t) {
		t = cd
	}
	d.conn.SetDeadline(t)
}

func (d *deadlines) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conn.SetDeadline(time.Unix(1, 0))
}

// ctxErr returns ctx's error if ctx is done or its deadline has passed
// (a socket deadline set from it can fire a moment before ctx's own
// timer), else err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return err
}

func writeMsg(w io.Writer, msg []byte) error {
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := w.Write(buf)
	return err
}

func readMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}
