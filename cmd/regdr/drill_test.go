package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/report"
	"github.com/regdr/regdr/internal/etcdtest"
)

// TestDrillValidate: the library validates; a broken file is explained
// line by line with exit 1; JSON lists each file.
func TestDrillValidate(t *testing.T) {
	lib, err := filepath.Glob("../../drills/scenarios/*.yaml")
	if err != nil || len(lib) != 9 {
		t.Fatalf("library: %v %v", lib, err)
	}
	r := run(t, append([]string{"drill", "validate"}, lib...)...)
	if r.Code != 0 || strings.Count(r.Stdout, ": ok (") != 9 {
		t.Fatalf("library: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: broken\nsteps:\n  - action: kill-agent\n  - wait: {for: zone-frozen cold start}\nmeasure: {rpo: true}\nexpext: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, "drill", "validate", bad, lib[0])
	if r.Code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		bad + ":3:5: steps[0]: action kill-agent needs args.site",
		bad + `:4:17: steps[1].wait.for: condition "zone-frozen cold start" takes 0 to 1 arguments`,
		bad + ":5:10: measure.rpo: RPO is measured from the load journal, but no step starts load",
		bad + `:6:1: scenario: unknown field "expext"`,
		lib[0] + ": ok (",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.Stdout)
		}
	}
	if !strings.Contains(r.Stderr, "1 of 2 scenario file(s) invalid") {
		t.Errorf("stderr %q", r.Stderr)
	}

	r = run(t, "drill", "validate", "-o", "json", bad)
	if r.Code != 1 || !strings.Contains(r.Stdout, `"valid": false`) || !strings.Contains(r.Stdout, `"problems": [`) {
		t.Errorf("json: exit %d\n%s", r.Code, r.Stdout)
	}
	if r := run(t, "drill", "validate"); r.Code != 2 {
		t.Errorf("no files: exit %d, want 2", r.Code)
	}
}

// TestDrillRunRefusals: a production scenario, or --production, is refused
// before anything touches a lab.
func TestDrillRunRefusals(t *testing.T) {
	dir := t.TempDir()
	prod := filepath.Join(dir, "prod.yaml")
	if err := os.WriteFile(prod, []byte("name: prod\ntarget: {production: true}\nsteps: [{action: stop-generator}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, "drill", "run", prod, "--lab-dir", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "targets production: it needs --production") {
		t.Errorf("production scenario: exit %d %s", r.Code, r.Stderr)
	}
	r = run(t, "drill", "run", "../../drills/scenarios/se-2009-trailing-dot.yaml", "--lab-dir", dir)
	if r.Code != 1 || !strings.Contains(r.Stderr, "no lab here") {
		t.Errorf("no lab: exit %d %s", r.Code, r.Stderr)
	}
}

// TestDrillHistory lists the history a drill run records in etcd, with the
// trend against the previous run of the same scenario.
func TestDrillHistory(t *testing.T) {
	eps, cli := etcdtest.Start(t)
	path := writeConfig(t, deployment{etcd: eps[0], tokyo: closedAddr(t), osaka: closedAddr(t), witness: closedAddr(t), secretMode: 0o600})
	r := run(t, "--config", path, "drill", "history")
	if r.Code != 0 || !strings.Contains(r.Stdout, "no drills recorded") {
		t.Fatalf("empty history: exit %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for i, rto := range []float64{12.5, 9.0} {
		lost := i
		e := report.Entry{Scenario: "tokyo-site-loss", Started: t0.Add(time.Duration(i) * 24 * time.Hour), Outcome: report.Passed,
			RTOSeconds: &rto, RPOWrites: &lost, Report: "/r/" + string(rune('a'+i)) + ".html"}
		if err := report.Record(ctx, cli, "/regdr-cli-test", e); err != nil {
			t.Fatal(err)
		}
	}
	r = run(t, "--config", path, "drill", "history", "tokyo-site-loss")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if r.Code != 0 || len(lines) != 3 {
		t.Fatalf("history: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"12.5s", "9.0s", "▼ -3.5", "▲ +1.0", "/r/b.html"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("history lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = run(t, "--config", path, "-o", "json", "drill", "history")
	var got []report.Entry
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || len(got) != 2 || *got[1].RTOSeconds != 9 {
		t.Errorf("json history: %v %s", err, r.Stdout)
	}
}

// TestDrillRequest: a production drill request is stored for the exact
// file, and the approver sees precisely what they sign.
func TestDrillRequest(t *testing.T) {
	eps, _ := etcdtest.Start(t)
	path := writeConfig(t, deployment{etcd: eps[0], tokyo: closedAddr(t), osaka: closedAddr(t), witness: closedAddr(t), secretMode: 0o600})
	dir := t.TempDir()
	prod := filepath.Join(dir, "prod.yaml")
	if err := os.WriteFile(prod, []byte("name: prod\ntarget: {production: true}\nsteps: [{action: stop-generator}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, "--config", path, "-o", "json", "drill", "request", prod, "--operator", "alice")
	var req struct{ Kind, ID, Digest, Requester string }
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &req) != nil || req.Kind != "drill" || req.ID != "prod" || req.Requester != "alice" || len(req.Digest) != 64 {
		t.Fatalf("request: exit %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = run(t, "--config", path, "drill", "approve", "prod", "--print-message")
	if r.Code != 0 || !strings.Contains(r.Stdout, `kind "drill"`) || !strings.Contains(r.Stdout, req.Digest) || !strings.Contains(r.Stdout, `requester "alice"`) {
		t.Errorf("print-message: exit %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := run(t, "--config", path, "drill", "approve", "other", "--print-message"); r.Code != 1 || !strings.Contains(r.Stderr, "has no request") {
		t.Errorf("approve without request: exit %d %s", r.Code, r.Stderr)
	}
	lab := filepath.Join(dir, "lab.yaml")
	os.WriteFile(lab, []byte("name: lab-only\nsteps: [{action: stop-generator}]\n"), 0o644)
	if r := run(t, "--config", path, "drill", "request", lab); r.Code != 1 || !strings.Contains(r.Stderr, "needs no approval") {
		t.Errorf("lab drill request: exit %d %s", r.Code, r.Stderr)
	}
}
