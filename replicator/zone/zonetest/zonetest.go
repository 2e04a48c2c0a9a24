// Package zonetest builds zones for tests: a registry-shaped zone (apex
// SOA and NS, delegations with NS, some DS, some in-zone glue, a few TXT)
// of any size, deterministic for a given (origin, serial, n).
package zonetest

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// SOARefresh is the refresh timer of generated zones: one hour, so a
// secondary in a test only catches a new serial if it was NOTIFYed.
const SOARefresh = 3600

// Records returns about n records (never fewer) for origin at serial.
func Records(origin string, serial uint32, n int) []dns.RR {
	origin = dns.Fqdn(origin)
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(fmt.Sprintf("zonetest: %q: %v", s, err))
		}
		return r
	}
	out := []dns.RR{
		rr(fmt.Sprintf("%s 3600 IN SOA ns1.%s hostmaster.%s %d %d 900 604800 3600", origin, origin, origin, serial, SOARefresh)),
		rr(fmt.Sprintf("%s 86400 IN NS ns1.%s", origin, origin)),
		rr(fmt.Sprintf("%s 86400 IN NS ns2.%s", origin, origin)),
		rr(fmt.Sprintf("ns1.%s 3600 IN A 192.0.2.1", origin)),
		rr(fmt.Sprintf("ns2.%s 3600 IN AAAA 2001:db8::2", origin)),
		rr(fmt.Sprintf(`%s 3600 IN TXT "serial %d"`, origin, serial)),
	}
	for i := 0; len(out) < n; i++ {
		d := fmt.Sprintf("d%06d.%s", i, origin)
		out = append(out, rr(fmt.Sprintf("%s 86400 IN NS ns.%s", d, d)))
		out = append(out, rr(fmt.Sprintf("%s 86400 IN NS ns.example-dns.net.", d)))
		out = append(out, rr(fmt.Sprintf("ns.%s 3600 IN A 198.51.%d.%d", d, (i/250)%250, i%250+1)))
		if i%3 == 0 {
			out = append(out, rr(fmt.Sprintf("%s 3600 IN DS %d 13 2 %064x", d, i%65536, i)))
		}
	}
	return out
}

// Zone is Records as a *zone.Zone.
func Zone(t testing.TB, origin string, serial uint32, n int) *zone.Zone {
	t.Helper()
	z, err := zone.FromRecords(origin, Records(origin, serial, n))
	if err != nil {
		t.Fatalf("zonetest: %v", err)
	}
	return z
}
