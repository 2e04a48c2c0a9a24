package zoneverify

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

func TestDelegationsAndCompare(t *testing.T) {
	var rrs []dns.RR
	for _, s := range []string{
		"test. 3600 IN SOA ns1.nic.test. hostmaster.test. 1 1800 900 604800 3600",
		"test. 3600 IN NS ns1.nic.test.",
		"kumo.test. 86400 IN NS NS2.example.net.",
		"kumo.test. 86400 IN NS ns1.example.net.",
		"sora.test. 86400 IN NS ns1.sora.test.",
		"ns1.sora.test. 86400 IN A 192.0.2.1",
	} {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	z, err := zone.FromRecords("test.", rrs)
	if err != nil {
		t.Fatal(err)
	}
	d := Delegations(z)
	if len(d) != 2 || strings.Join(d["kumo.test."], " ") != "ns1.example.net. ns2.example.net." {
		t.Fatalf("delegations %v", d)
	}
	tests := []struct {
		got  []string
		want string
	}{
		{[]string{"ns2.example.net.", "ns1.example.net."}, ""},
		{nil, "not delegated"},
		{[]string{"ns1.example.net."}, "NS ns1.example.net. at the secondary, published ns1.example.net. ns2.example.net."},
	}
	for _, tc := range tests {
		got := CompareNS("kumo.test.", d["kumo.test."], tc.got)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("CompareNS(%v) = %q, want %q", tc.got, got, tc.want)
		}
	}
}
