package gates

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

func TestSerialVerdict(t *testing.T) {
	tests := []struct {
		prev, cand uint32
		same       bool
		want       string
	}{
		{1, 2, false, SerialNewer},
		{2026011500, 2026011501, false, SerialNewer},
		{4294967295, 0, false, SerialNewer}, // wraps (RFC 1982)
		{4294967295, 5, false, SerialNewer},
		{1, 1 + 1<<31 - 1, false, SerialNewer}, // the farthest step forward
		{1, 1 + 1<<31, false, SerialUndefined},
		{2, 1, false, SerialRegression},
		{0, 4294967295, false, SerialRegression},
		{7, 7, true, SerialUnchanged},
		{7, 7, false, SerialSameDifferent},
	}
	for _, tt := range tests {
		if got := SerialVerdict(tt.prev, tt.cand, tt.same); got != tt.want {
			t.Errorf("SerialVerdict(%d, %d, %v) = %s, want %s", tt.prev, tt.cand, tt.same, got, tt.want)
		}
	}
}

func TestSerialGate(t *testing.T) {
	const file = "serial.txt"
	secs := sections(t, file)
	// withSerial is section name at serial s.
	withSerial := func(t *testing.T, name string, s uint32) *zone.Zone {
		z := sectionZone(t, secs, file, name, "test.")
		rrs := z.RRs()
		soa := dns.Copy(z.SOA()).(*dns.SOA)
		soa.Serial = s
		rrs[0] = soa
		out, err := zone.FromRecords("test.", rrs)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	type ver struct {
		content string
		serial  uint32
	}
	tests := []struct {
		name            string
		cand, prev, pub *ver
		status          string
		kinds           []string
		reason          string
	}{
		{"first version", &ver{"a", 1}, nil, nil, StatusSkip, nil, "first version"},
		{"newer", &ver{"b", 2}, &ver{"a", 1}, nil, StatusPass, nil, "serial 2 follows 1"},
		{"wrapped around", &ver{"b", 3}, &ver{"a", 4294967290}, nil, StatusPass, nil, "follows"},
		{"unchanged", &ver{"a", 5}, &ver{"a", 5}, nil, StatusPass, nil, "unchanged"},
		{"same serial, different content", &ver{"b", 5}, &ver{"a", 5}, nil, StatusFail, []string{"same-serial"}, "same serial, different content"},
		{"regression", &ver{"b", 4}, &ver{"a", 5}, nil, StatusFail, []string{"serial-regression"}, "4 is not after the previous version's 5"},
		{"2^31 apart", &ver{"b", 1 + 1<<31}, &ver{"a", 1}, nil, StatusFail, []string{"serial-undefined"}, "undefined"},
		{"behind the published version only", &ver{"b", 6}, &ver{"a", 5}, &ver{"a", 9}, StatusFail, []string{"serial-regression"},
			"6 is not after the published version's 9"},
		{"ahead of both", &ver{"b", 10}, &ver{"a", 9}, &ver{"a", 8}, StatusPass, nil, "follows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &Input{Zone: withSerial(t, tt.cand.content, tt.cand.serial), Now: fixedNow}
			if tt.prev != nil {
				in.Previous = withSerial(t, tt.prev.content, tt.prev.serial)
			}
			if tt.pub != nil {
				in.Published = withSerial(t, tt.pub.content, tt.pub.serial)
			}
			r := runOne(t, serialGate{DefaultConfig()}, in)
			checkResult(t, r, tt.status, tt.kinds, nil)
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", r.Reason, tt.reason)
			}
			for _, f := range r.Findings {
				if f.Name != "test." || f.Type != "SOA" {
					t.Errorf("finding should name the apex SOA: %v", f)
				}
			}
		})
	}
}
