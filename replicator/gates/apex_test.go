package gates

import "testing"

func TestApexGate(t *testing.T) {
	const file = "apex.txt"
	secs := sections(t, file)
	tests := []struct {
		name, zone   string
		status       string
		kinds, names []string
	}{
		{"SOA, NS, glue, sibling and self-named name servers", "good", StatusPass, nil, nil},
		{"no NS at the apex", "no-apex-ns", StatusFail, []string{"no-apex-ns"}, []string{"test."}},
		{"CNAME beside TXT", "cname-and-data", StatusFail, []string{"cname-and-data"}, []string{"www.test."}},
		{"two CNAMEs at one name", "two-cnames", StatusFail, []string{"several-cname"}, []string{"www.test."}},
		{"DS without NS", "empty-delegation", StatusFail, []string{"empty-delegation"}, []string{"kumo.test."}},
		{"data hidden by a delegation", "occluded", StatusFail, []string{"occluded"},
			[]string{"kumo.test.", "sub.kumo.test.", "www.kumo.test."}},
		{"in-domain name server without glue", "missing-glue", StatusFail, []string{"missing-glue"}, []string{"kumo.test."}},
		{"in-zone name servers without addresses", "missing-address", StatusFail, []string{"missing-address"},
			[]string{"kumo.test.", "test."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runOne(t, apexGate{DefaultConfig()}, &Input{Zone: sectionZone(t, secs, file, tt.zone, "test."), Now: fixedNow})
			checkResult(t, r, tt.status, tt.kinds, tt.names)
			for _, f := range r.Findings {
				if f.Line == 0 {
					t.Errorf("finding without a line: %v", f)
				}
			}
		})
	}
}
