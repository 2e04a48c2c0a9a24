package gates

import (
	"fmt"
	"strings"
	"testing"
)

func TestBudgetGate(t *testing.T) {
	gen := func(serial uint32, n int, edit func(i int, l []string) []string) func(t *testing.T) string {
		return func(t *testing.T) string { return tld("budget test", serial, n, edit) }
	}
	// changeNS moves delegations [from, to) to other name servers.
	changeNS := func(from, to int) func(int, []string) []string {
		return func(i int, l []string) []string {
			if i < from || i >= to {
				return l
			}
			return []string{rrLine(delName(i), 86400, "NS", "ns1.moved.example."), rrLine(delName(i), 86400, "NS", "ns2.moved.example.")}
		}
	}
	dropDS := func(i int, l []string) []string {
		if i != 0 && i != 3 && i != 6 && i != 9 && i != 12 && i != 15 {
			return l
		}
		return l[:2] // NS, NS; the DS and glue go
	}
	upperNS := func(i int, l []string) []string {
		for k := range l {
			if strings.Contains(l[k], " NS ") {
				l[k] = strings.ToUpper(l[k][:24]) + l[k][24:]
			}
		}
		return l
	}
	everything := Config{MaxRemovedPercent: 100, MaxAddedPercent: 100, MaxChangedPercent: 100, MinChangeBase: 0}
	tests := []struct {
		name       string
		cfg        *Config
		cand, prev func(t *testing.T) string
		pub        func(t *testing.T) string
		status     string
		kinds      []string
		reason     string
	}{
		{name: "first version", cand: gen(2, 100, nil), status: StatusSkip, reason: "first version"},
		{name: "unchanged", cand: gen(2, 100, nil), prev: gen(1, 100, nil), status: StatusPass, reason: "0 removed, 0 added, 0 changed of 100"},
		{name: "2 of 100 removed: at the limit", cand: gen(2, 98, nil), prev: gen(1, 100, nil), status: StatusPass},
		{name: "3 of 100 removed", cand: gen(2, 97, nil), prev: gen(1, 100, nil), status: StatusFail,
			kinds: []string{"removed"}, reason: "3 of 100 delegations removed since the previous version (3.0%), limit 2% of 100 = 2"},
		{name: "1 of 3 removed is fine on a small zone (MinChangeBase)", cand: gen(2, 2, nil), prev: gen(1, 3, nil), status: StatusPass},
		{name: "1 of 3 removed is 33% without MinChangeBase", cfg: &Config{MaxRemovedPercent: 2, MaxAddedPercent: 10, MaxChangedPercent: 5},
			cand: gen(2, 2, nil), prev: gen(1, 3, nil), status: StatusFail, kinds: []string{"removed"}, reason: "(33.3%)"},
		{name: "11 of 100 added", cand: gen(2, 111, nil), prev: gen(1, 100, nil), status: StatusFail, kinds: []string{"added"}, reason: "11 of 100 delegations added"},
		{name: "10 of 100 added", cand: gen(2, 110, nil), prev: gen(1, 100, nil), status: StatusPass},
		{name: "6 of 100 moved name servers", cand: gen(2, 100, changeNS(10, 16)), prev: gen(1, 100, nil), status: StatusFail,
			kinds: []string{"changed"}, reason: "6 of 100 delegations changed (NS or DS)"},
		{name: "DS removed counts as a change", cand: gen(2, 100, dropDS), prev: gen(1, 100, nil),
			cfg: &Config{MaxRemovedPercent: 2, MaxAddedPercent: 10, MaxChangedPercent: 5, MinChangeBase: 0}, status: StatusFail,
			kinds: []string{"changed"}, reason: "6 of 100 delegations changed"},
		{name: "owner and target case is not a change", cand: gen(2, 100, upperNS), prev: gen(1, 100, nil), status: StatusPass},
		{name: "empty zone, whatever the thresholds", cfg: &everything, cand: func(t *testing.T) string {
			return apexLines(2)[0] + "\n"
		}, prev: gen(1, 100, nil), status: StatusFail, kinds: []string{"empty-zone"}, reason: "refused whatever the thresholds"},
		{name: "apex-only zone, whatever the thresholds", cfg: &everything, cand: gen(2, 0, nil), prev: gen(1, 3, nil),
			status: StatusFail, kinds: []string{"apex-only"}, reason: "apex-only zone: no delegations, the previous version (serial 1) has 3 delegations"},
		{name: "compared with the published version, not the previous one", cand: gen(3, 100, nil), prev: gen(2, 100, nil),
			pub: gen(1, 80, nil), status: StatusFail, kinds: []string{"added"}, reason: "20 of 80 delegations added"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				cfg = *tt.cfg
			}
			in := &Input{Zone: parseText(t, tt.cand(t), "cand.zone", "test."), Now: fixedNow}
			if tt.prev != nil {
				in.Previous = parseText(t, tt.prev(t), "prev.zone", "test.")
			}
			if tt.pub != nil {
				in.Published = parseText(t, tt.pub(t), "pub.zone", "test.")
			}
			r := runOne(t, budgetGate{cfg}, in)
			checkResult(t, r, tt.status, tt.kinds, nil)
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", r.Reason, tt.reason)
			}
		})
	}
}

// The removed delegations are named, located in the version that had them.
func TestBudgetNamesRemoved(t *testing.T) {
	prev := parseText(t, tld("prev", 1, 100, nil), "prev.zone", "test.")
	cand := parseText(t, tld("cand", 2, 100, func(i int, l []string) []string {
		if i >= 40 && i < 45 {
			return nil
		}
		return l
	}), "cand.zone", "test.")
	r := runOne(t, budgetGate{DefaultConfig()}, &Input{Zone: cand, Previous: prev, Now: fixedNow})
	var want []string
	for i := 40; i < 45; i++ {
		want = append(want, delName(i))
	}
	checkResult(t, r, StatusFail, []string{"removed"}, want)
	for _, f := range r.Findings {
		if f.File != "prev.zone" || f.Line == 0 {
			t.Errorf("removed delegation should point into prev.zone: %v", f)
		}
	}
	if got := fmt.Sprint(r.Findings[0]); !strings.HasPrefix(got, "prev.zone:") {
		t.Errorf("String() = %q, want file:line first", got)
	}
}
