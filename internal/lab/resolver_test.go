package lab_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
)

// The lab's validating resolver sees the registry's zone from outside:
// through the public secondary, trusting only tokyo's KSK, with answers
// secure for the apex and for delegations as the registry database holds
// them.
func TestLabResolver(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 300})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := l.State
	tld := st.TLD

	if st.Resolver == "" || !slices.Contains(st.Listen, st.Resolver) {
		t.Fatalf("State.Resolver %q is not among the listen addresses %v (lab down would not check it)", st.Resolver, st.Listen)
	}
	running := false
	for _, p := range l.Parts() {
		if p.Name == "unbound" {
			running = p.Running
		}
	}
	if !running {
		t.Fatalf("lab parts %+v: unbound not running", l.Parts())
	}

	// A signed and an unsigned delegation, from the registry itself.
	db, err := pgx.Connect(ctx, l.SiteConnString("tokyo"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var signed string
	var keyTag uint16
	if err := db.QueryRow(ctx, `SELECT d.name, r.key_tag FROM domains d JOIN ds_records r ON r.domain_id = d.id
		ORDER BY d.name LIMIT 1`).Scan(&signed, &keyTag); err != nil {
		t.Fatalf("a domain with DS: %v", err)
	}
	var unsigned string
	if err := db.QueryRow(ctx, `SELECT d.name FROM domains d WHERE NOT EXISTS
		(SELECT 1 FROM ds_records r WHERE r.domain_id = d.id) ORDER BY d.name LIMIT 1`).Scan(&unsigned); err != nil {
		t.Fatalf("a domain without DS: %v", err)
	}
	signed, unsigned = signed+"."+tld, unsigned+"."+tld

	// The zone is published by the generator; the lab resolver checked
	// the SOA during Up already, the rest must validate too.
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer uint16
	}{
		{"TLD SOA", tld, dns.TypeSOA, dns.RcodeSuccess, dns.TypeSOA},
		{"TLD DNSKEY", tld, dns.TypeDNSKEY, dns.RcodeSuccess, dns.TypeDNSKEY},
		{"DS of a signed delegation", signed, dns.TypeDS, dns.RcodeSuccess, dns.TypeDS},
		{"no DS at an unsigned delegation (NSEC proof)", unsigned, dns.TypeDS, dns.RcodeSuccess, 0},
		{"nonexistent domain (NSEC proof)", "no-such-domain-here." + tld, dns.TypeDS, dns.RcodeNameError, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			res, err := l.Resolve(c, tc.qname, tc.qtype)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rcode != tc.rcode || !res.Secure || res.Bogus {
				t.Fatalf("%s %s: %s; want %s and secure", tc.qname, dns.TypeToString[tc.qtype], res, dns.RcodeToString[tc.rcode])
			}
			if tc.answer != 0 && !hasRRType(res.Answer, tc.answer) {
				t.Errorf("answer %v lacks %s", res.Answer, dns.TypeToString[tc.answer])
			}
			if tc.answer == 0 && hasRRType(res.Answer, tc.qtype) {
				t.Errorf("answer %v has %s, want none", res.Answer, dns.TypeToString[tc.qtype])
			}
			if tc.qtype == dns.TypeDS && tc.answer == dns.TypeDS {
				var tags []uint16
				for _, rr := range res.Answer {
					if ds, ok := rr.(*dns.DS); ok {
						tags = append(tags, ds.KeyTag)
					}
				}
				if !slices.Contains(tags, keyTag) {
					t.Errorf("DS key tags %v through the resolver, registry has %d", tags, keyTag)
				}
			}
		})
	}

	// The SOA the resolver validated is the one the secondary serves.
	serial, err := l.SecondarySerial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the resolver's SOA serial to match the secondary's", func() error {
		res, err := l.Resolve(ctx, tld, dns.TypeSOA)
		if err != nil {
			return err
		}
		for _, rr := range res.Answer {
			if soa, ok := rr.(*dns.SOA); ok && res.Secure && strings.EqualFold(soa.Hdr.Name, tld) && soa.Serial >= serial {
				return nil
			}
		}
		return fmt.Errorf("resolver answers %s %v, secondary serial %d", res, res.Answer, serial)
	})

	// Outside the lab zone nothing is resolved: no query leaves loopback.
	res, err := l.Resolve(ctx, "example.com.", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rcode != dns.RcodeRefused {
		t.Errorf("example.com. A through the lab resolver: %s, want REFUSED", res)
	}

	// `lab status` lists the resolver as a part, and a killed resolver
	// comes back with Restart on the same address.
	p, _ := st.Proc("unbound")
	if err := lab.Kill(p); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart(ctx, "unbound"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a secure SOA after restarting unbound", func() error {
		res, err := l.Resolve(ctx, tld, dns.TypeSOA)
		if err != nil {
			return err
		}
		if !res.Secure {
			return fmt.Errorf("%s", res)
		}
		return nil
	})
	r := labtest.Run(t, nil, "lab", "status", "--dir", st.Dir)
	if r.Code != 0 || !strings.Contains(r.Stdout, "unbound") {
		t.Errorf("regdr lab status (exit %d) does not list unbound:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

func hasRRType(rrs []dns.RR, t uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}
