package zonegen

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func baseParams() Params {
	return Params{
		Origin:   "test.",
		Serial:   7,
		ApexNS:   []string{"ns2.nic.test.", "a.nic.example."},
		ApexGlue: map[string][]netip.Addr{"ns2.nic.test.": addrs("192.0.2.53", "2001:db8::53")},
	}
}

// lines renders records as "name type rdata" without TTL and class, the
// part the table cares about.
func lines(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		f := strings.SplitN(rr.String(), "\t", 5)
		out = append(out, h.Name+" "+dns.TypeToString[h.Rrtype]+" "+f[4])
	}
	return out
}

func TestBuild(t *testing.T) {
	apex := []string{
		"test. SOA ns2.nic.test. hostmaster.test. 7 1800 900 604800 3600",
		"test. NS a.nic.example.",
		"test. NS ns2.nic.test.",
	}
	apexGlue := []string{
		"ns2.nic.test. A 192.0.2.53",
		"ns2.nic.test. AAAA 2001:db8::53",
	}
	join := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		name    string
		snap    Snapshot
		params  func(*Params)
		want    []string // exact records, in order
		wantErr string
	}{
		{
			name: "empty registry gives apex only",
			want: join(apex, apexGlue),
		},
		{
			name: "NS sorted, out-of-zone hosts get no glue even when the snapshot has addresses",
			snap: Snapshot{
				Delegations: []Delegation{{Label: "kumo", NS: []string{"ns2.hosting07.net.", "NS1.Hosting07.net."}}},
				Glue:        map[string][]netip.Addr{"ns1.hosting07.net.": addrs("198.51.100.1")},
			},
			want: join(apex, []string{
				"kumo.test. NS ns1.hosting07.net.",
				"kumo.test. NS ns2.hosting07.net.",
			}, apexGlue),
		},
		{
			name: "in-zone hosts get glue, DS present, delegations sorted",
			snap: Snapshot{
				Delegations: []Delegation{
					{Label: "yama", NS: []string{"ns.hosting01.net."}},
					{Label: "kumo", NS: []string{"ns2.kumo.test.", "ns1.kumo.test."},
						DS: []DS{{KeyTag: 4242, Algorithm: 13, DigestType: 2, Digest: strings.Repeat("ab", 32)}}},
				},
				Glue: map[string][]netip.Addr{
					"ns1.kumo.test.":  addrs("192.0.2.2", "192.0.2.1"),
					"ns2.kumo.test.":  addrs("2001:db8::2"),
					"ns.orphan.test.": addrs("192.0.2.99"), // no delegation uses it
				},
			},
			want: join(apex, []string{
				"kumo.test. NS ns1.kumo.test.",
				"kumo.test. NS ns2.kumo.test.",
				"kumo.test. DS 4242 13 2 " + strings.Repeat("AB", 32),
				"yama.test. NS ns.hosting01.net.",
			}, []string{
				"ns1.kumo.test. A 192.0.2.1",
				"ns1.kumo.test. A 192.0.2.2",
				"ns2.kumo.test. AAAA 2001:db8::2",
			}, apexGlue),
		},
		{
			name: "a host shared by the apex and a domain gets one address set",
			snap: Snapshot{
				Delegations: []Delegation{{Label: "nic", NS: []string{"ns2.nic.test."}}},
				Glue:        map[string][]netip.Addr{"ns2.nic.test.": addrs("192.0.2.53")},
			},
			want: join(apex, []string{"nic.test. NS ns2.nic.test."}, apexGlue),
		},
		{
			name:   "upper-case origin and labels are lower-cased, no doubled origin",
			params: func(p *Params) { p.Origin = "TEST." },
			snap:   Snapshot{Delegations: []Delegation{{Label: "Kumo", NS: []string{"ns.hosting01.net."}}}},
			want:   join(apex, []string{"kumo.test. NS ns.hosting01.net."}, apexGlue),
		},
		{
			name:   "custom timers and TTLs",
			params: func(p *Params) { p.SOA.Minimum = 900; p.TTL.NS = 3600 },
			want: []string{
				"test. SOA ns2.nic.test. hostmaster.test. 7 1800 900 604800 900",
				"test. NS a.nic.example.", "test. NS ns2.nic.test.",
				"ns2.nic.test. A 192.0.2.53", "ns2.nic.test. AAAA 2001:db8::53",
			},
		},
		{
			name:    "origin without trailing dot is refused",
			params:  func(p *Params) { p.Origin = "test" },
			wantErr: "no trailing dot",
		},
		{
			name:    "label carrying the origin is refused (doubled origin)",
			snap:    Snapshot{Delegations: []Delegation{{Label: "kumo.test", NS: []string{"ns.hosting01.net."}}}},
			wantErr: "not a single label",
		},
		{
			name:    "label carrying the origin with its dot is refused",
			snap:    Snapshot{Delegations: []Delegation{{Label: "kumo.test.", NS: []string{"ns.hosting01.net."}}}},
			wantErr: "not a single label",
		},
		{
			name:    "relative name server is refused",
			snap:    Snapshot{Delegations: []Delegation{{Label: "kumo", NS: []string{"ns1.kumo"}}}},
			wantErr: "no trailing dot",
		},
		{
			name:    "duplicate domain is refused",
			snap:    Snapshot{Delegations: []Delegation{{Label: "kumo", NS: []string{"a.example."}}, {Label: "KUMO", NS: []string{"b.example."}}}},
			wantErr: "appears twice",
		},
		{
			name:    "delegation without name servers is refused",
			snap:    Snapshot{Delegations: []Delegation{{Label: "kumo"}}},
			wantErr: "no name servers",
		},
		{
			name: "DS digest that is not hex is refused",
			snap: Snapshot{Delegations: []Delegation{{Label: "kumo", NS: []string{"a.example."},
				DS: []DS{{KeyTag: 1, Algorithm: 13, DigestType: 2, Digest: "xyz"}}}}},
			wantErr: "not hex",
		},
		{
			name:    "no apex name servers is refused",
			params:  func(p *Params) { p.ApexNS = nil; p.ApexGlue = nil },
			wantErr: "no apex name servers",
		},
		{
			name:    "apex glue outside the zone is refused",
			params:  func(p *Params) { p.ApexGlue["a.nic.example."] = addrs("192.0.2.9") },
			wantErr: "not an absolute name inside the zone",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := baseParams()
			if tc.params != nil {
				tc.params(&p)
			}
			rrs, err := Build(tc.snap, p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := lines(rrs); !slices.Equal(got, tc.want) {
				t.Fatalf("records:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, rr := range rrs {
				n := rr.Header().Name
				if !dns.IsFqdn(n) || !dns.IsSubDomain("test.", n) || strings.Contains(n, "test.test.") {
					t.Errorf("owner %q is not absolute and inside test. exactly once", n)
				}
			}
		})
	}
}

func TestBuildTTLs(t *testing.T) {
	rrs, err := Build(Snapshot{Delegations: []Delegation{{Label: "kumo", NS: []string{"ns1.kumo.test."},
		DS: []DS{{KeyTag: 1, Algorithm: 13, DigestType: 2, Digest: "00ff"}}}},
		Glue: map[string][]netip.Addr{"ns1.kumo.test.": addrs("192.0.2.1")}}, baseParams())
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint16]uint32{dns.TypeSOA: 3600, dns.TypeNS: 86400, dns.TypeDS: 3600, dns.TypeA: 86400, dns.TypeAAAA: 86400}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Ttl != want[h.Rrtype] {
			t.Errorf("%s %s TTL %d, want %d", h.Name, dns.TypeToString[h.Rrtype], h.Ttl, want[h.Rrtype])
		}
	}
}

func TestNextSerial(t *testing.T) {
	at := func(unix int64) time.Time { return time.Unix(unix, 0) }
	tests := []struct {
		name string
		prev uint32
		now  time.Time
		want uint32
	}{
		{"first zone takes the clock", 0, at(1_780_000_000), 1_780_000_000},
		{"clock ahead of prev", 1_780_000_000, at(1_780_000_100), 1_780_000_100},
		{"two zones in one second", 1_780_000_100, at(1_780_000_100), 1_780_000_101},
		{"burst ran ahead of the clock", 1_780_000_105, at(1_780_000_101), 1_780_000_106},
		{"clock stepped back", 1_780_000_000, at(1_700_000_000), 1_780_000_001},
		{"date-style serial above the clock", 2_026_112_401, at(1_780_000_000), 2_026_112_402},
		{"prev at 2^32-1 wraps to 0 (RFC 1982)", 4_294_967_295, at(1_000), 1_000},
		{"clock too far ahead for RFC 1982 is not used", 5, at(1<<31 + 10), 6},
		{"clock before 1970 is not used", 41, at(-5), 42},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NextSerial(tc.prev, tc.now)
			if got != tc.want {
				t.Fatalf("NextSerial(%d, %d) = %d, want %d", tc.prev, tc.now.Unix(), got, tc.want)
			}
			if !SerialNewer(got, tc.prev) {
				t.Fatalf("%d is not newer than %d in RFC 1982 arithmetic", got, tc.prev)
			}
		})
	}
}

func TestSerialNewer(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{2, 1, true},
		{1, 2, false},
		{1, 1, false},
		{0, 4_294_967_295, true},
		{1 << 31, 0, false}, // exactly half way is undefined in RFC 1982: not newer
		{1<<31 - 1, 0, true},
	}
	for _, tc := range tests {
		if got := SerialNewer(tc.a, tc.b); got != tc.want {
			t.Errorf("SerialNewer(%d, %d) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
