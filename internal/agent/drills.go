package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/schedule"
)

// drillTimeout bounds one scheduled drill: the library's longest scenario
// takes a few minutes on the lab; a drill still running after this is
// stuck, and the next slot should not find it holding the lab.
const drillTimeout = 30 * time.Minute

// drillJob is one schedules.drills entry resolved against the config.
type drillJob struct {
	// Name is the schedule job name, the same at every agent:
	// "drill-<scenario file name without .yaml>".
	Name     string
	Cron     string
	Scenario string // absolute path
	LabDir   string
}

// labStateFile is the file that marks a lab directory (internal/lab's
// StateFile; the agent cannot import internal/lab, which imports it).
const labStateFile = "lab.json"

// drillJobs resolves the scheduled drills. Scheduled drills only ever run
// against a lab: the config must sit in a lab directory (next to its
// lab.json), because a drill against production needs a two-person
// approval that nobody gives at 3 a.m. Scenario paths are relative to the
// config file.
func drillJobs(cfg *config.Config) ([]drillJob, error) {
	if len(cfg.Schedules.Drills) == 0 {
		return nil, nil
	}
	dir := filepath.Dir(cfg.Path())
	if _, err := os.Stat(filepath.Join(dir, labStateFile)); err != nil {
		return nil, fmt.Errorf("scheduled drills run only against a lab, and %s is not in a lab directory (no %s there); production drills need a two-person approval", cfg.Path(), labStateFile)
	}
	var jobs []drillJob
	var errs []error
	seen := map[string]bool{}
	for i, d := range cfg.Schedules.Drills {
		p := d.Scenario
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("schedules.drills[%d]: scenario %s: %w", i, p, err))
			continue
		}
		name := "drill-" + strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		if seen[name+" "+d.Cron] {
			continue
		}
		seen[name+" "+d.Cron] = true
		jobs = append(jobs, drillJob{Name: name, Cron: d.Cron, Scenario: p, LabDir: dir})
	}
	return jobs, errors.Join(errs...)
}

// startDrills runs schedules.drills. Every agent schedules every drill;
// internal/schedule elects one per slot through etcd, so each runs once
// even though all three agents watch the clock. The drill itself is a
// `regdr drill run` subprocess, as an operator would run it, which writes
// the reports and the history in etcd.
func (a *Agent) startDrills(ctx context.Context, wg *sync.WaitGroup) {
	if a.etcd == nil || len(a.cfg.Schedules.Drills) == 0 {
		return
	}
	jobs, err := drillJobs(a.cfg)
	if err != nil {
		a.log.Error("scheduled drills", "err", err)
	}
	bin, berr := os.Executable()
	if berr != nil {
		a.log.Error("scheduled drills: cannot find the regdr binary", "err", berr)
		return
	}
	r := &schedule.Runner{Client: a.etcd, Prefix: a.cfg.Etcd.Prefix, Owner: "agent/" + a.site.Name, Logger: a.log}
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.Run(ctx, schedule.Job{Name: j.Name, Cron: j.Cron, Run: func(ctx context.Context, slot time.Time) error {
				return a.runDrill(ctx, bin, j)
			}})
			if err != nil && ctx.Err() == nil {
				a.log.Error("scheduled drill stopped", "drill", j.Name, "err", err)
			}
		}()
	}
}

func (a *Agent) runDrill(ctx context.Context, bin string, j drillJob) error {
	ctx, cancel := context.WithTimeout(ctx, drillTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config", a.cfg.Path(), "drill", "run", j.Scenario,
		"--lab-dir", j.LabDir, "--yes", "--operator", "agent "+a.site.Name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	a.log.Info("scheduled drill starting", "drill", j.Name, "scenario", j.Scenario)
	err := cmd.Run()
	tail := strings.TrimSpace(out.String())
	if lines := strings.Split(tail, "\n"); len(lines) > 12 {
		tail = strings.Join(lines[len(lines)-12:], "\n")
	}
	if err != nil {
		return fmt.Errorf("drill %s: %w\n%s", j.Name, err, tail)
	}
	a.log.Info("scheduled drill passed", "drill", j.Name, "output", tail)
	return nil
}
