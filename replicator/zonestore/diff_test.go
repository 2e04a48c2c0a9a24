package zonestore

import (
	"slices"
	"strings"
	"testing"

	"github.com/regdr/regdr/replicator/zone"
)

func TestDiff(t *testing.T) {
	soa1 := "test.\t3600\tIN\tSOA\tns1.test. hostmaster.test. 2024010101 3600 900 604800 3600"
	soa2 := "test.\t3600\tIN\tSOA\tns1.test. hostmaster.test. 2024010102 3600 900 604800 3600"
	tests := []struct {
		name        string
		a, b        string // fixtures; "" is no zone
		wantAdded   []string
		wantRemoved []string
		wantSummary string
	}{
		{
			// hana delegated, sora removed, kumo's ns2 now ns3; case
			// changes in owner names are no change.
			name: "delegation added, removed, NS changed", a: "v1.zone", b: "v2.zone",
			wantAdded: []string{
				"hana.test.\t86400\tIN\tNS\tns.example-dns.net.",
				"hana.test.\t86400\tIN\tNS\tns.other-dns.net.",
				"kumo.test.\t86400\tIN\tNS\tns3.hosting.example.",
				soa2,
			},
			wantRemoved: []string{
				"kumo.test.\t86400\tIN\tNS\tns2.hosting.example.",
				"sora.test.\t86400\tIN\tNS\tns.example-dns.net.",
				"sora.test.\t86400\tIN\tNS\tns.other-dns.net.",
				soa1,
			},
			wantSummary: "+4 -4 (NS +3 -3, SOA +1 -1)",
		},
		{
			name: "reverse", a: "v2.zone", b: "v1.zone",
			wantAdded: []string{
				"kumo.test.\t86400\tIN\tNS\tns2.hosting.example.",
				"sora.test.\t86400\tIN\tNS\tns.example-dns.net.",
				"sora.test.\t86400\tIN\tNS\tns.other-dns.net.",
				soa1,
			},
			wantRemoved: []string{
				"hana.test.\t86400\tIN\tNS\tns.example-dns.net.",
				"hana.test.\t86400\tIN\tNS\tns.other-dns.net.",
				"kumo.test.\t86400\tIN\tNS\tns3.hosting.example.",
				soa2,
			},
			wantSummary: "+4 -4 (NS +3 -3, SOA +1 -1)",
		},
		{
			name: "TTL counts", a: "v1.zone", b: "v2-ttl.zone",
			wantAdded:   []string{"ns.akane.test.\t300\tIN\tA\t198.51.100.1", soa2},
			wantRemoved: []string{"ns.akane.test.\t3600\tIN\tA\t198.51.100.1", soa1},
			wantSummary: "+2 -2 (A +1 -1, SOA +1 -1)",
		},
		{name: "same version", a: "v1.zone", b: "v1.zone", wantSummary: "no change"},
		{
			name: "from nothing", a: "", b: "v1.zone",
			wantAdded:   fixtureLines(t, "v1.zone"),
			wantSummary: "+13 -0 (A +2, AAAA +1, DS +1, NS +8, SOA +1)",
		},
		{
			name: "to nothing", a: "v1.zone", b: "",
			wantRemoved: fixtureLines(t, "v1.zone"),
			wantSummary: "+0 -13 (A -2, AAAA -1, DS -1, NS -8, SOA -1)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a, b *zone.Zone
			if tt.a != "" {
				a = fixture(t, tt.a)
			}
			if tt.b != "" {
				b = fixture(t, tt.b)
			}
			d := Diff(a, b)
			if got := texts(d.Added); !slices.Equal(got, sorted(tt.wantAdded)) {
				t.Errorf("added:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sorted(tt.wantAdded), "\n"))
			}
			if got := texts(d.Removed); !slices.Equal(got, sorted(tt.wantRemoved)) {
				t.Errorf("removed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sorted(tt.wantRemoved), "\n"))
			}
			if got := d.Summary().String(); got != tt.wantSummary {
				t.Errorf("summary %q, want %q", got, tt.wantSummary)
			}
			if d.Empty() != (len(tt.wantAdded)+len(tt.wantRemoved) == 0) {
				t.Errorf("Empty() = %v", d.Empty())
			}
		})
	}
}

// TestDiffStoredVersions diffs versions as they come back from the store,
// which is how `regdr zone diff` and IXFR get them.
func TestDiffStoredVersions(t *testing.T) {
	s := newStore(t)
	v1, v2 := fixture(t, "v1.zone"), fixture(t, "v2.zone")
	m1 := mustPut(t, s, v1, accepted(t0))
	m2 := mustPut(t, s, v2, accepted(t0.Add(1)))
	l1, err := s.Load(m1)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := s.Load(m2)
	if err != nil {
		t.Fatal(err)
	}
	want, got := Diff(v1, v2), Diff(l1, l2)
	if !slices.Equal(texts(got.Added), texts(want.Added)) || !slices.Equal(texts(got.Removed), texts(want.Removed)) {
		t.Errorf("diff of stored versions %s, of the originals %s", got.Summary(), want.Summary())
	}
	if n := len(got.Added) + len(got.Removed); n != 8 {
		t.Errorf("diff of stored versions has %d records, want 8", n)
	}
}

func fixtureLines(t *testing.T, name string) []string {
	t.Helper()
	return texts(fixture(t, name).RRs())
}

func texts[R interface{ String() string }](rrs []R) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		out[i] = rr.String()
		if owner, rest, ok := strings.Cut(out[i], "\t"); ok {
			out[i] = strings.ToLower(owner) + "\t" + rest
		}
	}
	return out
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}
