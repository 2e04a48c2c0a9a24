package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regdr/regdr/internal/config"
)

// TestDrillJobs: scheduled drills resolve only in a lab directory, with
// scenario paths relative to the config and one job name per scenario at
// every agent.
func TestDrillJobs(t *testing.T) {
	base, err := os.ReadFile("../config/testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	parse := func(t *testing.T, dir string) *config.Config {
		t.Helper()
		path := filepath.Join(dir, "regdr.yaml")
		cfg, probs := config.Parse(base, path)
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		cfg.Schedules.Drills = []config.Drill{
			{Scenario: "drills/osaka-loss.yaml", Cron: "0 3 * * *"},
			{Scenario: filepath.Join(dir, "drills", "se-2009-trailing-dot.yaml"), Cron: "30 3 * * 1"},
		}
		return cfg
	}
	mkdir := func(t *testing.T, lab bool, scenarios ...string) string {
		dir := t.TempDir()
		if lab {
			if err := os.WriteFile(filepath.Join(dir, labStateFile), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		os.MkdirAll(filepath.Join(dir, "drills"), 0o755)
		for _, s := range scenarios {
			if err := os.WriteFile(filepath.Join(dir, "drills", s), []byte("name: x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}

	t.Run("lab", func(t *testing.T) {
		dir := mkdir(t, true, "osaka-loss.yaml", "se-2009-trailing-dot.yaml")
		jobs, err := drillJobs(parse(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 2 || jobs[0].Name != "drill-osaka-loss" || jobs[0].Scenario != filepath.Join(dir, "drills", "osaka-loss.yaml") ||
			jobs[0].LabDir != dir || jobs[1].Name != "drill-se-2009-trailing-dot" || jobs[1].Cron != "30 3 * * 1" {
			t.Errorf("jobs %+v", jobs)
		}
	})
	t.Run("missing scenario", func(t *testing.T) {
		dir := mkdir(t, true, "osaka-loss.yaml")
		jobs, err := drillJobs(parse(t, dir))
		if len(jobs) != 1 || err == nil || !strings.Contains(err.Error(), "schedules.drills[1]") {
			t.Errorf("jobs %+v err %v", jobs, err)
		}
	})
	t.Run("not a lab", func(t *testing.T) {
		dir := mkdir(t, false, "osaka-loss.yaml", "se-2009-trailing-dot.yaml")
		jobs, err := drillJobs(parse(t, dir))
		if len(jobs) != 0 || err == nil || !strings.Contains(err.Error(), "only against a lab") {
			t.Errorf("jobs %+v err %v", jobs, err)
		}
	})
}
