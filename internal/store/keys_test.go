package store

import "testing"

func TestKeys(t *testing.T) {
	def, custom := Keys{}, Keys{Prefix: "/lab/regdr/"}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"default active", def.Active(), "/regdr/active"},
		{"custom active", custom.Active(), "/lab/regdr/active"},
		{"freeze zone", def.Freeze("test."), "/regdr/freeze/test."},
		{"freeze zone canonical", def.Freeze("TEST"), "/regdr/freeze/test."},
		{"freeze all", def.Freeze(""), "/regdr/freeze/*"},
		{"freezes", def.Freezes(), "/regdr/freeze/"},
		{"freeze escapes slash", def.Freeze("a/b"), "/regdr/freeze/a%2Fb."},
		{"audit entry", def.AuditEntry(42), "/regdr/audit/entries/00000000000000000042"},
		{"audit entry max", def.AuditEntry(^uint64(0)), "/regdr/audit/entries/18446744073709551615"},
		{"audit entries", custom.AuditEntries(), "/lab/regdr/audit/entries/"},
		{"audit head", def.AuditHead(), "/regdr/audit/head"},
		{"agent", def.Agent("osaka"), "/regdr/agents/osaka"},
		{"agent escapes", def.Agent("../active"), "/regdr/agents/..%2Factive"},
		{"operation", def.Operation("op-7"), "/regdr/operations/op-7"},
		{"zone version", def.ZoneVersion("Example.TEST", 2024010101), "/regdr/zones/example.test./versions/2024010101"},
		{"zone version padded", def.ZoneVersion("test.", 7), "/regdr/zones/test./versions/0000000007"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

// Key order must be numeric order, or List and Verify would walk the audit
// chain out of order.
func TestAuditKeysSortNumerically(t *testing.T) {
	var k Keys
	seqs := []uint64{1, 9, 10, 99, 100, 1 << 40, ^uint64(0)}
	for i := 1; i < len(seqs); i++ {
		if a, b := k.AuditEntry(seqs[i-1]), k.AuditEntry(seqs[i]); a >= b {
			t.Fatalf("key for %d (%s) does not sort before key for %d (%s)", seqs[i-1], a, seqs[i], b)
		}
	}
}

func TestCanonicalZone(t *testing.T) {
	for in, want := range map[string]string{"": "", "test": "test.", "TEST.": "test.", ".": ".", "Kumo.Test": "kumo.test."} {
		if got := CanonicalZone(in); got != want {
			t.Errorf("CanonicalZone(%q) = %q, want %q", in, got, want)
		}
	}
}
