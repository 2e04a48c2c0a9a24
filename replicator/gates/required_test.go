package gates

import (
	"strings"
	"testing"
)

func TestRequiredGate(t *testing.T) {
	const file = "required.txt"
	secs := sections(t, file)
	tests := []struct {
		name     string
		required []string
		cand     string
		prev     string
		removed  map[string]bool
		status   string
		kinds    []string
		names    []string
		reason   string
	}{
		{name: "required names present", required: []string{"nic.test.", "*.nic.test.", "KUMO.test."}, cand: "forward",
			status: StatusPass, reason: "3 required names present"},
		{name: "a required name missing", required: []string{"nic.test.", "*.classless.test."}, cand: "forward-next",
			status: StatusFail, kinds: []string{"required-missing"}, names: []string{"nic.test."}},
		{name: "a suffix with nothing below it", required: []string{"*.nic.test."}, cand: "forward-next",
			status: StatusFail, kinds: []string{"required-missing"}, names: []string{"nic.test."}, reason: "1 required-missing"},
		{name: "a name outside the zone can never be present", required: []string{"nic.example."}, cand: "forward",
			status: StatusFail, kinds: []string{"required-missing"}, names: []string{"nic.example."}},
		{name: "a relative name is refused, not guessed", required: []string{"nic.test"}, cand: "forward",
			status: StatusFail, kinds: []string{"bad-requirement"}, names: []string{"nic.test"}},
		{name: "lost DS and classless CNAME; ordinary CNAME and a whole delegation may go", cand: "forward-next", prev: "forward",
			status: StatusFail, kinds: []string{"ds-lost", "rfc2317-cname-lost"}, names: []string{"kumo.test.", "mail.classless.test."}},
		{name: "removed on purpose by the registry", cand: "forward-next", prev: "forward",
			removed: map[string]bool{"KUMO.test.": true, "mail.classless.test.": true}, status: StatusPass,
			reason: "the previous version's 1 RFC 2317 CNAME and 2 DS sets kept"},
		{name: "unknown registry removals excuse nothing", cand: "forward-next", prev: "forward", removed: map[string]bool{},
			status: StatusFail, kinds: []string{"ds-lost", "rfc2317-cname-lost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.RequiredNames = tt.required
			in := &Input{Zone: sectionZone(t, secs, file, tt.cand, "test."), Now: fixedNow, RemovedByRegistry: tt.removed}
			if tt.prev != "" {
				in.Previous = sectionZone(t, secs, file, tt.prev, "test.")
			}
			r := runOne(t, requiredGate{cfg}, in)
			checkResult(t, r, tt.status, tt.kinds, tt.names)
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", r.Reason, tt.reason)
			}
		})
	}
}

func TestClassless(t *testing.T) {
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"1.0/25.2.0.192.in-addr.arpa.", true},
		{"1.64-127.2.0.192.in-addr.arpa.", true},
		{"1.2.0.192.in-addr.arpa.", false},
		{"0/25.", true},
		{"/25.test.", false},
		{"0/.test.", false},
		{"0/x5.test.", false},
		{"mail.0/25.classless.test.", true},
	} {
		if got := hasClasslessLabel(tt.name); got != tt.want {
			t.Errorf("hasClasslessLabel(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
