package runner

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/probe"
	"github.com/regdr/regdr/drills/report"
	"github.com/regdr/regdr/drills/scenario"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
)

func cond(t *testing.T, s string) scenario.Cond {
	t.Helper()
	c, err := scenario.ParseCond(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEval(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	healthy := func() Observation {
		return Observation{
			Zone: "test.", Sites: []string{"tokyo", "osaka"}, SecondarySerial: 10, Secure: true, Writable: true,
			ActiveSite: "tokyo", CaughtUp: true, PostgresUp: map[string]bool{"tokyo": true, "osaka": true},
			Agents: map[string]*status.Agent{
				"tokyo": {Site: "tokyo", Health: "ok", Zones: []status.ZoneState{{Origin: "test.", Serial: 10}}},
				"osaka": {Site: "osaka", Health: "ok", Zones: []status.ZoneState{{Origin: "test.", Serial: 10}}},
			},
		}
	}
	blocked := func(at time.Time, gates ...string) Observation {
		o := healthy()
		o.Agents["tokyo"].Zones[0].Blocked = &status.BlockedVersion{Serial: 11, Gates: gates, At: at}
		return o
	}
	frozen := func(reason string) Observation {
		o := healthy()
		o.Freezes = []store.Freeze{{Zone: "test.", Reason: reason, By: "agent tokyo"}}
		return o
	}
	osakaDown := healthy()
	delete(osakaDown.Agents, "osaka")
	osakaDown.AgentErr = map[string]string{"osaka": "connection refused"}
	osakaDown.PostgresUp["osaka"] = false
	behind := healthy()
	behind.SecondarySerial = 9
	noDNS := healthy()
	noDNS.SecondaryErr = "timeout"
	b := Baseline{Since: t0, Serial: 9}
	for _, tc := range []struct {
		cond string
		obs  Observation
		ok   bool
		why  string
	}{
		{"dns-answering", healthy(), true, ""},
		{"dns-answering", noDNS, false, "timeout"},
		{"agents-healthy", healthy(), true, ""},
		{"agents-healthy", osakaDown, false, "osaka: connection refused"},
		{"agent-down osaka", osakaDown, true, ""},
		{"agent-up osaka", osakaDown, false, "does not answer"},
		{"zone-blocked", blocked(t0.Add(time.Second), "budget"), true, ""},
		{"zone-blocked origin", blocked(t0.Add(time.Second), "budget"), false, "by the origin gate"},
		{"zone-blocked origin", blocked(t0.Add(time.Second), "origin", "dnssec"), true, ""},
		// A refusal from before the steps began is the previous drill's.
		{"zone-blocked origin", blocked(t0.Add(-time.Second), "origin"), false, "since the steps began"},
		{"zone-frozen", frozen("cold-start: x"), true, ""},
		{"zone-frozen cold-start", frozen("cold-start: x"), true, ""},
		{"zone-frozen cold-start", frozen("maintenance"), false, "reason starting"},
		{"zone-thawed", frozen("maintenance"), false, "still frozen"},
		{"zone-thawed", healthy(), true, ""},
		{"secondary-in-sync", healthy(), true, ""},
		{"secondary-in-sync", behind, false, "secondary serves 9, tokyo serves 10"},
		{"secondary-serial-advanced", healthy(), true, ""},
		{"secondary-serial-advanced", behind, false, "not newer than 9"},
		{"active-site tokyo", healthy(), true, ""},
		{"active-site osaka", healthy(), false, `active site is "tokyo"`},
		{"postgres-down osaka", osakaDown, true, ""},
		{"postgres-up osaka", osakaDown, false, "osaka PostgreSQL"},
		{"replication-caught-up", healthy(), true, ""},
		{"registry-writable", healthy(), true, ""},
		{"dnssec-secure", healthy(), true, ""},
	} {
		err := Eval(cond(t, tc.cond), tc.obs, b)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("Eval(%s) = %v, want ok=%v (%q)", tc.cond, err, tc.ok, tc.why)
		}
	}
	// Every condition in the vocabulary is implemented.
	for name, spec := range scenario.Conditions {
		c := scenario.Cond{Name: name}
		for range spec.MinArgs {
			c.Args = append(c.Args, "tokyo")
		}
		if err := Eval(c, healthy(), b); err != nil && strings.Contains(err.Error(), "not implemented") {
			t.Errorf("condition %s: %v", name, err)
		}
	}
	if !serialAfter(1, 0xffffffff) || serialAfter(0xffffffff, 1) {
		t.Errorf("serialAfter ignores RFC 1982 wrap-around")
	}
}

// fakeEnv is a scripted world: actions flip state, probes and
// observations read it.
type fakeEnv struct {
	mu      sync.Mutex
	did     []string
	dnsDown bool
	serial  uint32
	blocked *status.BlockedVersion
	failOn  string
	regdr   func(args []string) (string, string, int)
	load    *LoadResult
}

func (f *fakeEnv) Do(ctx context.Context, action string, args map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.did = append(f.did, action)
	if action == f.failOn {
		return "", errors.New("boom")
	}
	switch action {
	case "cut-site":
		f.dnsDown = true
	case "restore-site":
		f.dnsDown = false
	case "trailing-dot":
		f.blocked = &status.BlockedVersion{Serial: f.serial + 1, Gates: []string{"origin"}, At: time.Now()}
	case "start-generator":
		f.serial++
	}
	return action + " done", nil
}

func (f *fakeEnv) Observe(ctx context.Context) Observation {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := Observation{At: time.Now(), Zone: "test.", Sites: []string{"tokyo"}, Secure: true, Writable: true, ActiveSite: "tokyo", CaughtUp: true,
		SecondarySerial: f.serial,
		Agents:          map[string]*status.Agent{"tokyo": {Site: "tokyo", Health: "ok", Zones: []status.ZoneState{{Origin: "test.", Serial: f.serial, Blocked: f.blocked}}}}}
	if f.dnsDown {
		o.SecondaryErr = "timeout"
	}
	return o
}

func (f *fakeEnv) Probe(name string) (probe.Func, error) {
	return func(ctx context.Context) (string, uint32, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if name == "dns-serial" && f.dnsDown {
			return "", 0, errors.New("timeout")
		}
		return "ok", f.serial, nil
	}, nil
}

func (f *fakeEnv) Regdr(ctx context.Context, args []string) (string, string, int, error) {
	f.mu.Lock()
	f.did = append(f.did, "regdr "+strings.Join(args, " "))
	f.mu.Unlock()
	if f.regdr == nil {
		return "", "", 0, nil
	}
	so, se, code := f.regdr(args)
	return so, se, code, nil
}

func (f *fakeEnv) Vars() map[string]string { return map[string]string{"zone": "test."} }

func (f *fakeEnv) FinishLoad(ctx context.Context) (*LoadResult, error) { return f.load, nil }

func (f *fakeEnv) actions() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.did, ",")
}

func runScenario(t *testing.T, yaml string, f *fakeEnv) *report.Report {
	t.Helper()
	s, err := scenario.Parse([]byte(yaml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := Run(ctx, s, Options{Faults: f, Observer: f, Commander: f, Loader: f, ObserveEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunPasses(t *testing.T) {
	f := &fakeEnv{serial: 7}
	r := runScenario(t, `name: gate
preconditions: [dns-answering, secondary-in-sync]
probes: [{probe: dns-serial, rate: 20}]
steps:
  - {name: stop, action: stop-generator}
  - {name: break, action: trailing-dot}
  - {name: blocked, wait: {for: zone-blocked origin, timeout: 5s}}
  - {name: hold, wait: {duration: 200ms}}
rollback:
  - {name: start, action: start-generator}
measure:
  rto: {from: break, until: zone-blocked}
expect:
  gate_blocked: origin
  secondary_serial_unchanged: true
  serial_monotonic: true
  min_dns_availability: 100
  max_rto: 5s
`, f)
	if r.Outcome != report.Passed {
		t.Fatalf("outcome %s: %v\n%s", r.Outcome, r.Reasons, report.Markdown(r))
	}
	if got := f.actions(); got != "stop-generator,trailing-dot,start-generator" {
		t.Errorf("actions %s", got)
	}
	phases := ""
	for _, s := range r.Steps {
		phases += s.Phase[:1]
	}
	if phases != "ppssssrvv" {
		t.Errorf("phases %s, want preconditions, steps, rollback, verify", phases)
	}
	if r.Metrics.RTOSeconds == nil || r.Metrics.DNSQueries < 3 || !r.Metrics.SerialMonotonic {
		t.Errorf("metrics %+v", r.Metrics)
	}
	if len(r.Expect) != 5 {
		t.Errorf("expectations %+v", r.Expect)
	}
}

// An abort condition halts the steps mid-wait and the rollback still runs;
// the outcome is aborted.
func TestRunAbortsAndRollsBack(t *testing.T) {
	f := &fakeEnv{serial: 7}
	r := runScenario(t, `name: abort
probes: [{probe: dns-serial, rate: 20}]
abort: [{probe: dns-serial, failing_for: 300ms}]
steps:
  - {name: cut, action: cut-site, args: {site: tokyo}}
  - {name: hold, wait: {duration: 10s}}
  - {name: never, action: stop-load}
rollback:
  - {name: restore, action: restore-site, args: {site: tokyo}}
`, f)
	if r.Outcome != report.Aborted || !strings.Contains(r.AbortReason, "dns-serial failing") {
		t.Fatalf("outcome %s abort %q", r.Outcome, r.AbortReason)
	}
	if got := f.actions(); got != "cut-site,restore-site" {
		t.Errorf("actions %s: the step after the abort ran or the rollback did not", got)
	}
	if d := r.Finished.Sub(r.Started); d > 5*time.Second {
		t.Errorf("abort took %s: the hold was not interrupted", d)
	}
}

// A failing step stops the steps; the rollback runs; a failed expectation
// is reported with what was seen.
func TestRunStepFailure(t *testing.T) {
	f := &fakeEnv{serial: 7, failOn: "trailing-dot"}
	r := runScenario(t, `name: fail
steps:
  - {name: stop, action: stop-generator}
  - {name: break, action: trailing-dot}
  - {name: never, action: stop-load}
rollback:
  - {name: start, action: start-generator}
expect: {gate_blocked: origin}
`, f)
	if r.Outcome != report.Failed {
		t.Fatalf("outcome %s", r.Outcome)
	}
	if got := f.actions(); got != "stop-generator,trailing-dot,start-generator" {
		t.Errorf("actions %s", got)
	}
	joined := strings.Join(r.Reasons, "\n")
	if !strings.Contains(joined, `step "break" failed: boom`) || !strings.Contains(joined, "expected gate_blocked origin, got (none)") {
		t.Errorf("reasons %q", joined)
	}
}

// regdr steps capture JSON fields into variables later steps use, and
// check exit codes and output.
func TestRunRegdrCapture(t *testing.T) {
	f := &fakeEnv{serial: 7, regdr: func(args []string) (string, string, int) {
		switch args[len(args)-1] {
		case "plan":
			return `{"id": "op-42", "hash": "x"}`, "", 0
		case "op-42":
			return "", "refused: keys missing at osaka", 1
		}
		return "", "unexpected", 2
	}}
	r := runScenario(t, `name: capture
steps:
  - regdr: {args: [-o, json, plan], capture: {plan: id}}
  - regdr: {args: [approve, "${plan}"], expect_exit: 1, expect_output: keys missing}
`, f)
	if r.Outcome != report.Passed {
		t.Fatalf("outcome %s %v", r.Outcome, r.Reasons)
	}
	if !strings.Contains(f.actions(), "regdr approve op-42") || r.Facts.Vars["plan"] != "op-42" {
		t.Errorf("actions %s vars %v", f.actions(), r.Facts.Vars)
	}
}

func TestRunRefusesProduction(t *testing.T) {
	s, err := scenario.Parse([]byte("name: p\ntarget: {production: true}\nsteps: [{action: stop-load}]\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEnv{}
	_, err = Run(context.Background(), s, Options{Faults: f, Observer: f, Commander: f})
	if !errors.Is(err, ErrProduction) || f.actions() != "" {
		t.Errorf("err %v, actions %q", err, f.actions())
	}
}
