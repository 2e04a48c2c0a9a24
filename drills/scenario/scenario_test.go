package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFull(t *testing.T) {
	s, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "full-example" || len(s.Tags) != 2 || len(s.Preconditions) != 2 || len(s.Steps) != 8 || len(s.Rollback) != 1 {
		t.Fatalf("decoded %+v", s)
	}
	if got := s.Preconditions[0].Within; got != 30*time.Second {
		t.Errorf("default within = %s, want 30s", got)
	}
	if got := s.Preconditions[1].Within; got != 10*time.Second {
		t.Errorf("within = %s, want 10s", got)
	}
	if s.Probes[0].Rate != 12 || s.Probes[1].Rate != Probes["dnssec"].DefaultRate {
		t.Errorf("probe rates %v %v", s.Probes[0].Rate, s.Probes[1].Rate)
	}
	st := s.Steps
	if st[1].Args["site"] != "osaka" || st[1].Timeout != 10*time.Second || st[1].Kind() != "action" {
		t.Errorf("step cut = %+v", st[1])
	}
	if st[2].Regdr == nil || st[2].Regdr.Capture["plan"] != "id" || st[3].Regdr.ExpectExit != 1 || st[3].Regdr.ExpectOutput != "refused" {
		t.Errorf("regdr steps = %+v %+v", st[2].Regdr, st[3].Regdr)
	}
	if st[5].Wait.For.Name != "zone-blocked" || st[5].Wait.For.Arg(0) != "origin" || st[5].Wait.Timeout != 20*time.Second {
		t.Errorf("wait = %+v", st[5].Wait)
	}
	if st[6].Name != "wait 1s" || st[7].Name != "stop-load" {
		t.Errorf("default names %q %q", st[6].Name, st[7].Name)
	}
	if st[4].Confirm.Prompt != "go on?" || st[5].Pos.Line != 30 {
		t.Errorf("confirm %+v, wait at line %d", st[4].Confirm, st[5].Pos.Line)
	}
	x := s.Expect
	if x.GateBlocked != "origin" || *x.LostWrites != 0 || *x.MinDNSAvailability != 99.5 || x.MaxRTO != 30*time.Second ||
		x.ActiveSite != "osaka" || !*x.ReplicationCaughtUp || *x.Aborted || x.Alarm != "backup" || x.Frozen != "cold-start" {
		t.Errorf("expect = %+v", x)
	}
	if s.Measure.RTO.From != "cut" || s.Measure.RTO.Until.String() != "active-site osaka" || !s.Measure.RPO {
		t.Errorf("measure = %+v", s.Measure)
	}
}

// TestParseProblems: each broken file yields problems at the right
// file:line:col with a message that says what to do.
func TestParseProblems(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // "line:col: substring", in order
	}{
		{"empty", "", []string{"1:1: empty file"}},
		{"syntax", "name: a\nsteps: [\n", []string{"2:1: YAML"}},
		{"not a mapping", "- a\n", []string{"1:1: scenario: want a mapping"}},
		{"missing name and steps", "description: x\n", []string{"1:1: scenario: name is required", "1:1: scenario: steps are required"}},
		{"unknown top-level", "name: a\nsteps: [{action: stop-load}]\nrollbak: []\n", []string{`3:1: scenario: unknown field "rollbak"`}},
		{"duplicate key", "name: a\nname: b\nsteps: [{action: stop-load}]\n", []string{`2:1: scenario: "name" given twice`}},
		{"bad name", "name: Bad_Name\nsteps: [{action: stop-load}]\n", []string{"1:7: name \"Bad_Name\""}},
		{"unknown action", "name: a\nsteps:\n  - action: explode\n", []string{`3:5: steps[0]: unknown action "explode"`}},
		{"missing arg", "name: a\nsteps:\n  - action: kill-agent\n", []string{"3:5: steps[0]: action kill-agent needs args.site"}},
		{"unknown arg", "name: a\nsteps:\n  - action: kill-agent\n    args: {site: osaka, force: \"1\"}\n", []string{`3:5: steps[0]: action kill-agent has no argument "force"`}},
		{"bad arg value", "name: a\nsteps:\n  - action: partial-zone\n    args: {fraction: \"2\"}\n", []string{"3:5: steps[0]: args.fraction: want a fraction"}},
		{"two kinds", "name: a\nsteps:\n  - action: stop-load\n    wait: {duration: 1s}\n", []string{"3:5: steps[0]: give exactly one of action, wait, regdr and confirm (found 2)"}},
		{"no kind", "name: a\nsteps:\n  - name: nothing\n", []string{"3:5: steps[0]: give exactly one"}},
		{"bad duration", "name: a\nsteps:\n  - wait: {duration: 5}\n", []string{`3:22: steps[0].wait.duration: "5" is not a duration`}},
		{"wait both", "name: a\nsteps:\n  - wait: {duration: 1s, for: dns-answering}\n", []string{"3:11: steps[0].wait: give exactly one of for"}},
		{"unknown condition", "name: a\nsteps:\n  - wait: {for: sky-falling}\n", []string{`3:17: steps[0].wait.for: unknown condition "sky-falling"`}},
		{"condition args", "name: a\nsteps:\n  - wait: {for: active-site}\n", []string{`3:17: steps[0].wait.for: condition "active-site" takes 1 argument(s)`}},
		{"precondition", "name: a\npreconditions:\n  - within: 3s\nsteps: [{action: stop-load}]\n", []string{"3:5: preconditions[0]: condition is required"}},
		{"unknown probe", "name: a\nprobes:\n  - probe: ping\nsteps: [{action: stop-load}]\n", []string{`3:5: probes[0]: unknown probe "ping"`}},
		{"sparse dns probe", "name: a\nprobes:\n  - {probe: dns-serial, rate: 1}\nsteps: [{action: stop-load}]\n", []string{"3:5: probes[0]: dns-serial at 1/s is too sparse"}},
		{"abort probe", "name: a\nabort:\n  - {probe: dnssec, failing_for: 3s}\nsteps: [{action: stop-load}]\n", []string{`3:5: abort[0]: probe "dnssec" is not among`}},
		{"rto from", "name: a\nsteps: [{action: stop-load}]\nmeasure:\n  rto: {from: nowhere, until: dns-answering}\n", []string{`4:8: measure.rto.from: no step is named "nowhere"`}},
		{"rpo without load", "name: a\nsteps: [{action: stop-load}]\nmeasure: {rpo: true}\n", []string{"3:10: measure.rpo: RPO is measured from the load journal"}},
		{"expect needs measure", "name: a\nsteps: [{action: stop-load}]\nexpect: {lost_writes: 0, max_rto: 3s}\n", []string{"3:9: expect.lost_writes", "3:9: expect.max_rto needs measure.rto"}},
		{"expect unknown gate", "name: a\nsteps: [{action: stop-load}]\nexpect: {gate_blocked: gravity}\n", []string{`3:9: expect.gate_blocked: unknown gate "gravity"`}},
		{"expect type", "name: a\nsteps: [{action: stop-load}]\nexpect: {serial_monotonic: yes please}\n", []string{"3:28: expect.serial_monotonic: want true or false"}},
		{"expect percent", "name: a\nsteps: [{action: stop-load}]\nprobes: [{probe: dns-serial}]\nexpect: {min_dns_availability: 120}\n", []string{"4:32: expect.min_dns_availability: 120 is not a percentage"}},
		{"regdr config", "name: a\nsteps:\n  - regdr: {args: [--config, x, status]}\n", []string{"3:5: steps[0].regdr: do not pass --config"}},
		{"regdr var", "name: a\nsteps:\n  - regdr: {args: [failover, approve, \"${plan}\"]}\n", []string{"3:5: steps[0].regdr: ${plan} is not set"}},
		{"regdr no args", "name: a\nsteps:\n  - regdr: {expect_exit: 1}\n", []string{"3:12: steps[0].regdr: args are required"}},
		{"duplicate step", "name: a\nsteps:\n  - {name: x, action: stop-load}\n  - {name: x, action: stop-load}\n", []string{`4:5: steps[1]: step name "x" used twice`}},
		{"alias", "name: a\nsteps: &s [{action: stop-load}]\nrollback: *s\n", []string{"3:11: scenario.rollback: aliases are not accepted"}},
		{"two documents", "name: a\nsteps: [{action: stop-load}]\n---\nname: b\n", []string{"3:1: a scenario file holds one YAML document"}},
		{"confirm prompt", "name: a\nsteps:\n  - confirm: {}\n", []string{"3:14: steps[0].confirm: prompt is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "x.yaml")
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("err = %v, want Problems", err)
			}
			if len(ps) < len(tc.want) {
				t.Fatalf("got %d problems, want at least %d:\n%v", len(ps), len(tc.want), err)
			}
			text := err.Error()
			at := 0
			for _, w := range tc.want {
				i := strings.Index(text[at:], "x.yaml:"+w)
				if i < 0 {
					t.Errorf("missing (in order) %q in:\n%s", "x.yaml:"+w, text)
					continue
				}
				at += i
			}
		})
	}
}

func TestEveryVocabularyHasHelp(t *testing.T) {
	for n, c := range Conditions {
		if c.Help == "" || !strings.HasPrefix(c.Usage, n) {
			t.Errorf("condition %s: usage %q help %q", n, c.Usage, c.Help)
		}
	}
	for n, a := range Actions {
		if a.Help == "" {
			t.Errorf("action %s has no help", n)
		}
	}
}

// FuzzParse: the decoder never panics, and it either returns a scenario
// that holds its invariants or problems that all carry a position.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../scenarios/*.yaml")
	seeds = append(seeds, "testdata/full.yaml")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("name: a\nsteps: [{action: stop-load}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("steps: [{wait: {for: \"\"}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b, "f.yaml")
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			for _, p := range ps {
				if p.Line < 1 || p.Col < 1 || p.Msg == "" {
					t.Fatalf("problem without position or message: %#v", p)
				}
			}
			return
		}
		if s.Name == "" || !validName.MatchString(s.Name) || len(s.Steps) == 0 {
			t.Fatalf("accepted scenario breaks invariants: %+v", s)
		}
		for _, st := range s.Steps {
			if st.Kind() == "" {
				t.Fatalf("accepted step without a kind: %+v", st)
			}
		}
	})
}
