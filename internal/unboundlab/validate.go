package unboundlab

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Result is what a validating resolver said about one question.
type Result struct {
	// Rcode of the answer (dns.RcodeSuccess, dns.RcodeServerFailure...).
	Rcode int
	// Secure: the resolver validated the answer (AD bit set on a NOERROR
	// or NXDOMAIN answer).
	Secure bool
	// Bogus: the resolver answered SERVFAIL because validation failed,
	// known from an Extended DNS Error in the DNSSEC range or, without
	// one, from the same question answered once checking is disabled (CD).
	Bogus bool
	// Reason is the Extended DNS Error text ("DNSSEC Bogus: ...") or why
	// Bogus was concluded; empty for a plain answer.
	Reason string
	// Answer is the answer section (with RRSIGs: the query sets DO).
	Answer []dns.RR
}

// String is one line for logs and test failures.
func (r Result) String() string {
	state := "insecure"
	switch {
	case r.Secure:
		state = "secure"
	case r.Bogus:
		state = "bogus"
	}
	s := fmt.Sprintf("%s %s, %d answer record(s)", dns.RcodeToString[r.Rcode], state, len(r.Answer))
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// dnssecEDE are the RFC 8914 codes that mean validation failed.
var dnssecEDE = map[uint16]bool{
	dns.ExtendedErrorCodeDNSSECIndeterminate:         true,
	dns.ExtendedErrorCodeDNSBogus:                    true,
	dns.ExtendedErrorCodeSignatureExpired:            true,
	dns.ExtendedErrorCodeSignatureNotYetValid:        true,
	dns.ExtendedErrorCodeDNSKEYMissing:               true,
	dns.ExtendedErrorCodeRRSIGsMissing:               true,
	dns.ExtendedErrorCodeNoZoneKeyBitSet:             true,
	dns.ExtendedErrorCodeNSECMissing:                 true,
	dns.ExtendedErrorCodeSignatureExpiredBeforeValid: true,
}

// Validate asks the resolver at resolverAddr (host:port) for name/qtype
// with DNSSEC records requested and reports whether the answer is secure
// or bogus. An error means the resolver could not be asked (no answer,
// ctx ended), not that the zone is broken: that is a Result.
func Validate(ctx context.Context, resolverAddr, name string, qtype uint16) (Result, error) {
	r, err := ask(ctx, resolverAddr, name, qtype, false)
	if err != nil {
		return Result{}, err
	}
	res := Result{Rcode: r.Rcode, Answer: r.Answer}
	res.Secure = r.AuthenticatedData && (r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError)
	var texts []string
	for _, e := range ede(r) {
		t := dns.ExtendedErrorCodeToString[e.InfoCode]
		if t == "" {
			t = fmt.Sprintf("EDE %d", e.InfoCode)
		}
		if e.ExtraText != "" {
			t += ": " + e.ExtraText
		}
		texts = append(texts, t)
		if r.Rcode == dns.RcodeServerFailure && dnssecEDE[e.InfoCode] {
			res.Bogus = true
		}
	}
	res.Reason = strings.Join(texts, "; ")
	if r.Rcode != dns.RcodeServerFailure || res.Bogus {
		return res, nil
	}
	// SERVFAIL without a DNSSEC reason: bogus if the data is there once
	// validation is off, an upstream failure otherwise.
	cd, err := ask(ctx, resolverAddr, name, qtype, true)
	if err != nil {
		return Result{}, err
	}
	if cd.Rcode == dns.RcodeSuccess || cd.Rcode == dns.RcodeNameError {
		res.Bogus = true
		if res.Reason == "" {
			res.Reason = "validation failed (answered with checking disabled)"
		}
	}
	return res, nil
}

// ask sends one query with RD, AD and DO set (CD when cd), over UDP with
// a TCP retry when truncated.
func ask(ctx context.Context, addr, name string, qtype uint16, cd bool) (*dns.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.CheckingDisabled = cd
	m.SetEdns0(1232, true)
	qname := fmt.Sprintf("%s %s", dns.Fqdn(name), dns.TypeToString[qtype])
	c := &dns.Client{Net: "udp", UDPSize: 1232, Timeout: 2 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("ask resolver %s for %s: %w", addr, qname, err)
	}
	if r.Id != m.Id {
		return nil, fmt.Errorf("ask resolver %s for %s: reply id %d does not match query %d", addr, qname, r.Id, m.Id)
	}
	return r, nil
}

func ede(r *dns.Msg) []*dns.EDNS0_EDE {
	opt := r.IsEdns0()
	if opt == nil {
		return nil
	}
	var out []*dns.EDNS0_EDE
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok {
			out = append(out, e)
		}
	}
	return out
}
