// Package zoneverify checks what a public secondary actually serves
// against a published zone version: its serial, and a random sample of
// delegations (RIPE 2017: nobody looked at the published output). The
// active site's agent runs it after every publication and the failover
// executor runs it as the "verified from outside" step.
package zoneverify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonepull"
)

// SampleSize is how many random delegations are compared at each
// secondary: enough to catch a truncated or stale zone (RIPE 2012: 43% of
// delegations missing) with near certainty, few enough to cost a few
// milliseconds.
const SampleSize = 20

// Delegations maps each delegation point of z to its sorted NS targets.
func Delegations(z *zone.Zone) map[string][]string {
	out := map[string][]string{}
	apex := dns.CanonicalName(z.Origin)
	for _, rr := range z.All() {
		if ns, ok := rr.(*dns.NS); ok {
			owner := dns.CanonicalName(ns.Hdr.Name)
			if owner != apex {
				out[owner] = append(out[owner], dns.CanonicalName(ns.Ns))
			}
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// Sample picks up to n delegation points of dels at random.
func Sample(dels map[string][]string, n int) []string {
	owners := make([]string, 0, len(dels))
	for o := range dels {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	rand.Shuffle(len(owners), func(i, j int) { owners[i], owners[j] = owners[j], owners[i] })
	return owners[:min(n, len(owners))]
}

// CompareNS says how a secondary's answer differs from what was
// published; "" when equal.
func CompareNS(owner string, want, got []string) string {
	slices.Sort(got)
	if slices.Equal(want, got) {
		return ""
	}
	if len(got) == 0 {
		return owner + ": not delegated at the secondary"
	}
	return fmt.Sprintf("%s: NS %s at the secondary, published %s", owner, strings.Join(got, " "), strings.Join(want, " "))
}

// WaitSerial polls addr's SOA serial for origin until it is serial or
// newer; it returns the last serial seen and, on timeout, why.
func WaitSerial(ctx context.Context, addr, origin string, serial uint32, superseded func() bool) (uint32, error) {
	for {
		qctx, qc := context.WithTimeout(ctx, time.Second)
		got, err := zonepull.QuerySerial(qctx, addr, origin)
		qc()
		if err == nil && !zone.SerialLess(got, serial) {
			return got, nil
		}
		if err == nil {
			err = fmt.Errorf("serves serial %d, published %d", got, serial)
		}
		if superseded != nil && superseded() {
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CheckSample compares the sampled owners' NS sets at addr with dels.
func CheckSample(ctx context.Context, addr string, dels map[string][]string, owners []string) []string {
	var mismatches []string
	for _, o := range owners {
		got, err := QueryNS(ctx, addr, o)
		if err != nil {
			mismatches = append(mismatches, o+": "+err.Error())
			continue
		}
		if d := CompareNS(o, dels[o], got); d != "" {
			mismatches = append(mismatches, d)
		}
	}
	return mismatches
}

// QueryNS asks a secondary (non-recursively) for owner's NS set; a
// delegation comes back as a referral in the authority section.
func QueryNS(ctx context.Context, addr, owner string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(owner, dns.TypeNS)
	m.RecursionDesired = false
	c := &dns.Client{Timeout: time.Second}
	in, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range append(in.Answer, in.Ns...) {
		if ns, ok := rr.(*dns.NS); ok && dns.CanonicalName(ns.Hdr.Name) == owner {
			out = append(out, dns.CanonicalName(ns.Ns))
		}
	}
	return out, nil
}

// Secure asks a validating resolver for origin's SOA with DNSSEC OK and
// requires an authenticated (AD) answer: DNSSEC validates from outside.
func Secure(ctx context.Context, resolver, origin string) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(origin), dns.TypeSOA)
	m.RecursionDesired = true
	m.SetEdns0(1232, true)
	m.AuthenticatedData = true
	c := &dns.Client{Timeout: 2 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, resolver)
	if err != nil {
		return fmt.Errorf("resolver %s: %w", resolver, err)
	}
	if in.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("resolver %s answers %s for %s SOA (bogus?)", resolver, dns.RcodeToString[in.Rcode], origin)
	}
	if !in.AuthenticatedData {
		return fmt.Errorf("resolver %s answers %s SOA without AD: not validated as secure", resolver, origin)
	}
	return nil
}
