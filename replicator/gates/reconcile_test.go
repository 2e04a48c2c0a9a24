package gates

import (
	"strings"
	"testing"
)

func TestReconcileGate(t *testing.T) {
	z := load(t, "incidents/good.zone", "test.")
	tests := []struct {
		name      string
		expected  *int
		tolerance int
		status    string
		reason    string
	}{
		{"no expectation: skipped, never passed", nil, 0, StatusSkip, "reconciliation not configured"},
		{"as expected", ptr(nDelegations), 0, StatusPass, "160 delegations, as the registry database expects"},
		{"one missing", ptr(nDelegations + 1), 0, StatusFail, "zone has 160 delegations, the registry database expects 161 (difference -1, tolerance 0)"},
		{"one extra", ptr(nDelegations - 1), 0, StatusFail, "difference +1"},
		{"one missing, within tolerance", ptr(nDelegations + 1), 1, StatusPass, "160 delegations"},
		{"two missing, beyond tolerance", ptr(nDelegations + 2), 1, StatusFail, "tolerance 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ReconcileTolerance = tt.tolerance
			r := runOne(t, reconcileGate{cfg}, &Input{Zone: z, ExpectedDelegations: tt.expected, Now: fixedNow})
			var kinds []string
			if tt.status == StatusFail {
				kinds = []string{"count-mismatch"}
			}
			checkResult(t, r, tt.status, kinds, nil)
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", r.Reason, tt.reason)
			}
		})
	}
}
