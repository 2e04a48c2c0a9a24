package gates

import (
	"strings"
	"testing"
)

func TestOriginGate(t *testing.T) {
	const file = "origin.txt"
	secs := sections(t, file)
	tests := []struct {
		name, zone, prev, origin string
		status                   string
		kinds, names             []string
		reason                   string
		line                     int // line of the first finding in origin.txt
	}{
		{name: "all names inside", zone: "good", status: StatusPass},
		{name: "out-of-zone record", zone: "out-of-zone", status: StatusFail,
			kinds: []string{"out-of-zone"}, names: []string{"www.example.com."}, reason: "1 record outside the zone test.", line: 14},
		{name: "$ORIGIN without its dot doubles every name", zone: "doubled-all", status: StatusFail,
			kinds: []string{"doubled-origin"}, names: []string{"kumo.test.test.", "ns1.kumo.test.test.", "sora.test.test."},
			reason: "doubled origin: 3 of 5 names end in test.test.: missing trailing dot?"},
		{name: "one name written without its dot", zone: "doubled-one", status: StatusFail,
			kinds: []string{"doubled-origin"}, names: []string{"sora.test.test."}, reason: "1 of 4 names", line: 32},
		{name: "a new delegation named like the doubled origin is reported once", zone: "registered-test-test", prev: "good",
			status: StatusFail, kinds: []string{"doubled-origin"}, names: []string{"ns1.test.test.", "test.test."}},
		{name: "an established test.test. delegation is a real domain", zone: "registered-test-test", prev: "registered-test-test",
			status: StatusPass},
		{name: "the root zone cannot double", zone: "root", origin: ".", status: StatusPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin := tt.origin
			if origin == "" {
				origin = "test."
			}
			in := &Input{Zone: sectionZone(t, secs, file, tt.zone, origin), Now: fixedNow}
			if tt.prev != "" {
				in.Previous = sectionZone(t, secs, file, tt.prev, origin)
			}
			r := runOne(t, originGate{DefaultConfig()}, in)
			checkResult(t, r, tt.status, tt.kinds, tt.names)
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", r.Reason, tt.reason)
			}
			if tt.line != 0 && r.Findings[0].Line != tt.line {
				t.Errorf("first finding at line %d, want %d", r.Findings[0].Line, tt.line)
			}
			for _, f := range r.Findings {
				if f.File != "testdata/origin.txt" || f.Line == 0 {
					t.Errorf("finding not located in the fixture: %v", f)
				}
			}
		})
	}
}
