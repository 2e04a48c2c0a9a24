// Package deploy holds what an operator installs: example configs, systemd
// units, Prometheus alert rules. Its test keeps them consistent with the
// code.
package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type rules struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert       string
			Expr        string
			Labels      map[string]string
			Annotations map[string]string
		}
	}
}

// Every alert has a severity and a runbook, and every regdr metric it uses
// is one the agent exports.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("prometheus/regdr-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r rules
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	// Metrics are declared across the agent's files (http.go, backup.go).
	files, err := filepath.Glob("../internal/agent/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("agent sources: %v", err)
	}
	var agentSrc []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		agentSrc = append(agentSrc, b...)
	}
	metric := regexp.MustCompile(`regdr_[a-z_]+`)
	n := 0
	for _, g := range r.Groups {
		for _, a := range g.Rules {
			n++
			if a.Alert == "" || a.Expr == "" {
				t.Errorf("rule %+v lacks alert or expr", a)
			}
			if s := a.Labels["severity"]; s != "page" && s != "warn" {
				t.Errorf("%s: severity %q, want page or warn", a.Alert, s)
			}
			if !strings.Contains(a.Annotations["runbook_url"], "#runbook-") || a.Annotations["summary"] == "" {
				t.Errorf("%s: needs a summary and a runbook_url", a.Alert)
			}
			for _, m := range metric.FindAllString(a.Expr, -1) {
				if !strings.Contains(string(agentSrc), `"`+m+`"`) {
					t.Errorf("%s uses %s, which the agent does not export", a.Alert, m)
				}
			}
		}
	}
	if n < 8 {
		t.Fatalf("only %d alert rules", n)
	}
}

// Every runbook link points at a heading the README has.
func TestRunbookAnchors(t *testing.T) {
	b, err := os.ReadFile("prometheus/regdr-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`#(runbook-[a-z-]+)`).FindAllStringSubmatch(string(b), -1) {
		heading := "### Runbook: " + strings.ReplaceAll(strings.TrimPrefix(m[1], "runbook-"), "-", " ")
		if !strings.Contains(string(readme), heading) {
			t.Errorf("alert links %s but README has no %q", m[0], heading)
		}
	}
}
