package zoneserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// NotifyResult is the outcome of notifying one target.
type NotifyResult struct {
	Target string
	// Acked is true when the target answered NOERROR with a valid TSIG.
	Acked bool
	// RTT is the round trip of the acknowledged attempt.
	RTT time.Duration
	// Attempts is how many NOTIFY messages were sent.
	Attempts int
	// Err says why the target was not acknowledged (nil when Acked).
	Err error
}

// Retransmission schedule. RFC 1996 §3.6 leaves the interval to the
// implementation; the first retry comes soon because a lost UDP packet on
// a healthy path is the common case, later ones back off so an unreachable
// secondary does not get a packet storm while ctx lasts.
const (
	notifyAttemptTimeout = 1 * time.Second
	notifyFirstBackoff   = 100 * time.Millisecond
	notifyMaxBackoff     = 5 * time.Second
)

// ErrNotifyRefused is wrapped in NotifyResult.Err when a target answered
// with an error rcode. That is final: the target is up and said no (wrong
// key, zone not configured there), and repeating will not change it.
var ErrNotifyRefused = errors.New("NOTIFY refused")

// Notify sends a TSIG-signed NOTIFY for origin at serial (RFC 1996: SOA in
// the answer section) to every target (host:port) in parallel over UDP,
// retransmitting with backoff until each acknowledges or ctx is done. It
// returns one result per target, in the order of targets. An
// acknowledgement means the target has been told, not that it has
// transferred: verify the serial it serves separately.
func Notify(ctx context.Context, targets []string, origin string, serial uint32, tsigName, secret string) []NotifyResult {
	return NotifyFrom(ctx, netip.Addr{}, targets, origin, serial, tsigName, secret)
}

// NotifyFrom is Notify sent from the local address src (the zero Addr lets
// the kernel choose). Secondaries accept NOTIFY only from the primaries
// their ACL names, so a hidden primary must send from the address it
// serves on, not whatever source the route picks.
func NotifyFrom(ctx context.Context, src netip.Addr, targets []string, origin string, serial uint32, tsigName, secret string) []NotifyResult {
	results := make([]NotifyResult, len(targets))
	keys, err := newKeyring(map[string]string{tsigName: secret})
	if err == nil && tsigName == "" {
		err = errors.New("TSIG key name is empty")
	}
	var wg sync.WaitGroup
	for i, target := range targets {
		results[i].Target = target
		if err != nil {
			results[i].Err = fmt.Errorf("notify %s of %s: %w", target, origin, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = notifyOne(ctx, src, target, dns.CanonicalName(origin), serial, dns.CanonicalName(tsigName), keys)
		}()
	}
	wg.Wait()
	return results
}

func notifyOne(ctx context.Context, src netip.Addr, target, origin string, serial uint32, keyName string, keys keyring) NotifyResult {
	res := NotifyResult{Target: target}
	c := &dns.Client{Net: "udp", TsigProvider: keys, Timeout: notifyAttemptTimeout}
	if src.IsValid() {
		c.Dialer = &net.Dialer{Timeout: notifyAttemptTimeout, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
	}
	backoff := notifyFirstBackoff
	var last error
	for {
		m := new(dns.Msg)
		m.SetNotify(origin)
		m.Answer = []dns.RR{&dns.SOA{
			Hdr:    dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET},
			Ns:     ".",
			Mbox:   ".",
			Serial: serial,
		}}
		m.SetTsig(keyName, dns.HmacSHA256, tsigFudge, time.Now().Unix())
		res.Attempts++
		r, rtt, err := c.ExchangeContext(ctx, m, target)
		switch {
		case r != nil && r.Id == m.Id && r.Response && r.Rcode != dns.RcodeSuccess:
			// Checked before err: a refusal for a bad key comes as
			// NOTAUTH with a TSIG we cannot verify (RFC 8945 §5.3.2),
			// which miekg reports as an error along with the answer.
			res.Err = fmt.Errorf("notify %s of %s serial %d: %w: %s", target, origin, serial, ErrNotifyRefused, rcodeText(r))
			return res
		case err != nil:
			last = err
		case r.IsTsig() == nil:
			// miekg verifies a TSIG when present but accepts an
			// unsigned answer; an unsigned ack could be anyone's.
			last = errors.New("answer carries no TSIG")
		case r.Opcode != dns.OpcodeNotify:
			last = fmt.Errorf("answer has opcode %s", dns.OpcodeToString[r.Opcode])
		default:
			res.Acked, res.RTT = true, rtt
			return res
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			res.Err = fmt.Errorf("notify %s of %s serial %d: not acknowledged after %d attempts: %w (last: %v)",
				target, origin, serial, res.Attempts, ctx.Err(), last)
			return res
		case <-t.C:
		}
		backoff = min(2*backoff, notifyMaxBackoff)
	}
}

// rcodeText names r's rcode, with the TSIG error (BADSIG, BADKEY, BADTIME)
// when the refusal carries one.
func rcodeText(r *dns.Msg) string {
	s := dns.RcodeToString[r.Rcode]
	if t := r.IsTsig(); t != nil && t.Error != 0 {
		s += " (TSIG " + dns.RcodeToString[int(t.Error)] + ")"
	}
	return s
}
