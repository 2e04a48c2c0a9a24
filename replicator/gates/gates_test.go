package gates

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultOrder(t *testing.T) {
	var got []string
	for _, g := range Default(DefaultConfig()) {
		got = append(got, g.Name())
	}
	want := []string{GateOrigin, GateApex, GateSerial, GateBudget, GateReconcile, GateRequired, GateDNSSEC, GateZONEMD}
	if !slices.Equal(got, want) {
		t.Errorf("Default = %v, want %v", got, want)
	}
}

func TestRunWithoutZone(t *testing.T) {
	for _, in := range []*Input{nil, {}} {
		rep := Run(context.Background(), Default(DefaultConfig()), in)
		if rep.Pass || len(rep.Failed()) != 1 || rep.Results[0].Reason == "" {
			t.Errorf("Run(%v) = %+v, want one failing result with a reason", in, rep)
		}
	}
}

func TestRunRefusesAnotherZone(t *testing.T) {
	rep := Run(context.Background(), Default(DefaultConfig()), &Input{
		Zone:     load(t, "incidents/good.zone", "test."),
		Previous: load(t, "incidents/rev-good.zone", "0.192.in-addr.arpa."),
		Now:      fixedNow,
	})
	if rep.Pass || !slices.Equal(rep.Failed(), []string{"input"}) || !strings.Contains(rep.Results[0].Reason, "0.192.in-addr.arpa.") {
		t.Errorf("comparing two zones: %+v", rep)
	}
}

// A cancelled run never passes: every gate not run is a failure.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := Run(ctx, Default(DefaultConfig()), &Input{Zone: load(t, "incidents/good.zone", "test."), Now: fixedNow})
	if rep.Pass {
		t.Fatal("a cancelled run passed")
	}
	for _, r := range rep.Results {
		if r.Status != StatusFail || !strings.Contains(r.Reason, "context canceled") {
			t.Errorf("%s: %s %q, want fail naming the cancellation", r.Gate, r.Status, r.Reason)
		}
	}
}

func TestReportIdentifiesVersion(t *testing.T) {
	z := load(t, "incidents/good.zone", "test.")
	rep := Run(context.Background(), Default(DefaultConfig()), &Input{Zone: z, Now: fixedNow})
	if rep.Origin != "test." || rep.Serial != goodSerial || rep.Digest != z.Digest {
		t.Errorf("report is for %s %d %s, want test. %d %s", rep.Origin, rep.Serial, rep.Digest, goodSerial, z.Digest)
	}
	if !rep.Pass || len(rep.Results) != 8 {
		t.Errorf("good zone alone: pass=%v, %d results", rep.Pass, len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Status == StatusSkip && r.Reason == "" {
			t.Errorf("%s skipped without a reason", r.Gate)
		}
		if r.Took <= 0 {
			t.Errorf("%s: Took not measured", r.Gate)
		}
	}
	if _, ok := rep.Result("nonesuch"); ok {
		t.Error("Result(nonesuch) found something")
	}
}

// The cap bounds the list, keeps the count, and never hides a kind.
func TestFindingsCap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxFindingsPerGate = 5
	z := load(t, "incidents/expired.zone", "test.")
	// Corrupt nothing else: expired zone, plus a zero tolerance count.
	r := runOne(t, dnssecGate{cfg}, &Input{Zone: z, Now: fixedNow})
	if len(r.Findings) != 5 || r.Total != z.Counts["RRSIG"] {
		t.Errorf("%d listed, total %d; want 5 listed of %d", len(r.Findings), r.Total, z.Counts["RRSIG"])
	}
	if !strings.Contains(r.Reason, "first 5 of") {
		t.Errorf("reason %q does not say the list is cut", r.Reason)
	}
	for i := 1; i < len(r.Findings); i++ {
		if r.Findings[i].Line < r.Findings[i-1].Line {
			t.Errorf("findings not in file order: %v", r.Findings)
		}
	}

	cfg.MaxFindingsPerGate = 1
	prev := load(t, "incidents/good.zone", "test.")
	r = runOne(t, budgetGate{cfg}, &Input{Zone: load(t, "incidents/doubled-all.zone", "test."), Previous: prev, Now: fixedNow})
	if got := kinds(r); !slices.Equal(got, []string{"added", "removed"}) {
		t.Errorf("capped at 1, kinds listed = %v, want both added and removed", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig is invalid: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative percentage", func(c *Config) { c.MaxRemovedPercent = -1 }, "max removed percent -1"},
		{"over 100", func(c *Config) { c.MaxAddedPercent = 101 }, "max added percent 101"},
		{"NaN", func(c *Config) { c.MaxChangedPercent = math.NaN() }, "max changed percent NaN"},
		{"negative base", func(c *Config) { c.MinChangeBase = -1 }, "min change base"},
		{"negative validity", func(c *Config) { c.MinSignatureValidity = -time.Hour }, "min signature validity"},
		{"negative tolerance", func(c *Config) { c.ReconcileTolerance = -1 }, "reconcile tolerance"},
		{"negative cap", func(c *Config) { c.MaxFindingsPerGate = -1 }, "max findings"},
		{"relative required name", func(c *Config) { c.RequiredNames = []string{"nic.test"} }, "missing trailing dot?"},
		{"bad required name", func(c *Config) { c.RequiredNames = []string{"a..b."} }, "not a domain name"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestFindingString(t *testing.T) {
	tests := []struct {
		f    Finding
		want string
	}{
		{Finding{Name: "kumo.test.", Type: "NS", File: "z.zone", Line: 12, Msg: "boom"}, "z.zone:12: kumo.test./NS: boom"},
		{Finding{Name: "test.", Msg: "boom"}, "test.: boom"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		child, parent string
		under         bool
	}{
		{"test.", "test.", true},
		{"a.test.", "test.", true},
		{"atest.", "test.", false},
		{`a\.test.`, "test.", false},
		{`a\\.test.`, "test.", true},
		{"test.", "a.test.", false},
		{"anything.", ".", true},
	}
	for _, tt := range tests {
		if got := under(tt.child, tt.parent); got != tt.under {
			t.Errorf("under(%q, %q) = %v, want %v", tt.child, tt.parent, got, tt.under)
		}
	}
	for in, want := range map[string]string{"a.test.": "test.", "test.": ".", ".": "", `a\.b.test.`: "test."} {
		if got := parentName(in); got != want {
			t.Errorf("parentName(%q) = %q, want %q", in, got, want)
		}
	}
	if s := "kumo.test."; lowerName(s) != s {
		t.Error("lowerName changed a canonical name")
	}
	if got := lowerName("KUMO.Test"); got != "kumo.test." {
		t.Errorf("lowerName = %q", got)
	}
	// RFC 4034 §6.1 example order.
	order := []string{"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", `\001.z.example.`, "*.z.example.", `\200.z.example.`}
	for i := 1; i < len(order); i++ {
		a, err1 := canonicalKey(order[i-1])
		b, err2 := canonicalKey(order[i])
		if err1 != nil || err2 != nil || a >= b {
			t.Errorf("canonical order: %q should sort before %q", order[i-1], order[i])
		}
	}
}

type panicGate struct{}

func (panicGate) Name() string { return "panics" }
func (panicGate) Check(context.Context, *Index, *Input) Result {
	panic("gate bug")
}

// A gate that panics blocks the version instead of crashing the caller.
func TestRunFailsClosedOnPanic(t *testing.T) {
	rep := Run(context.Background(), []Gate{panicGate{}, originGate{DefaultConfig()}},
		&Input{Zone: load(t, "incidents/good.zone", "test."), Now: fixedNow})
	if rep.Pass || !slices.Equal(rep.Failed(), []string{"panics"}) || !strings.Contains(rep.Results[0].Reason, "failed internally") {
		t.Errorf("report = %+v", rep)
	}
}

func TestReportPassed(t *testing.T) {
	rep := &Report{Results: []Result{
		{Gate: GateApex, Status: StatusPass},
		{Gate: GateDNSSEC, Status: StatusFail},
		{Gate: GateZONEMD, Status: StatusSkip},
	}}
	for _, tt := range []struct {
		gate string
		want bool
	}{{GateApex, true}, {GateDNSSEC, false}, {GateZONEMD, false}, {GateSerial, false}} {
		if got := rep.Passed(tt.gate); got != tt.want {
			t.Errorf("Passed(%s) = %v, want %v", tt.gate, got, tt.want)
		}
	}
	// An overridden version keeps its failing dnssec result.
	rep.Pass = true
	if rep.Passed(GateDNSSEC) {
		t.Error("Passed(dnssec) true for a report whose dnssec gate failed")
	}
	if (*Report)(nil).Passed(GateApex) {
		t.Error("a nil report passed something")
	}
}
