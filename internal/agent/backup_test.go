package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/schedule"
	"github.com/regdr/regdr/internal/store"
)

func gauge(t *testing.T, reg *prometheus.Registry, name, phase string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := phase == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" && l.GetValue() == phase {
					match = true
				}
			}
			if match {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{phase=%q}", name, phase)
	return 0
}

// The agent's backup status and metrics come from the catalog: the newest
// run's result and phases, the newest passing run's time, the verify site
// (the standby), and staleness against backup.max_age.
func TestBackupStatusFromCatalog(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := context.Background()
	now := time.Now().UTC()
	passed := backup.Verification{BackupID: "tokyo-1", Site: "osaka", Started: now.Add(-2 * time.Hour), Finished: now.Add(-2 * time.Hour).Add(time.Minute), Result: backup.StatusPassed,
		Phases: []backup.PhaseResult{{Name: backup.PhaseRestore, Status: backup.StatusPassed, Duration: 3 * time.Second}}}
	failed := backup.Verification{BackupID: "tokyo-2", Site: "osaka", Started: now.Add(-time.Hour), Finished: now.Add(-time.Hour).Add(time.Minute), Result: backup.StatusFailed,
		Phases: []backup.PhaseResult{{Name: backup.PhaseZone, Status: backup.StatusFailed, Duration: 2 * time.Second, Error: "no zone version"}}}
	tests := []struct {
		name      string
		maxAge    time.Duration
		runs      []backup.Verification
		wantOK    float64
		wantStale bool
	}{
		{"last failed", 26 * time.Hour, []backup.Verification{passed, failed}, 0, false},
		{"last passed", 26 * time.Hour, []backup.Verification{passed}, 1, false},
		{"passed but too old", time.Hour, []backup.Verification{passed}, 1, true},
		{"never verified", 26 * time.Hour, nil, 0, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := "/t" + string(rune('a'+i))
			cfg := &config.Config{
				Etcd:      config.Etcd{Prefix: prefix},
				Sites:     []config.Site{{Name: "tokyo"}, {Name: "osaka"}, {Name: "witness", Witness: true}},
				Schedules: config.Schedules{BackupVerify: "30 3 * * *"},
				Backup:    &config.Backup{MaxAge: config.Duration{Duration: tt.maxAge}},
			}
			if _, err := store.InitActive(ctx, cli, store.Keys{Prefix: prefix}, "tokyo", "test"); err != nil {
				t.Fatal(err)
			}
			cat := backup.NewCatalog(cli, prefix)
			if err := cat.Add(ctx, backup.Backup{ID: "tokyo-2", Site: "tokyo", Time: now.Add(-3 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
			for _, v := range tt.runs {
				if err := cat.Record(ctx, v); err != nil {
					t.Fatal(err)
				}
			}
			a := &Agent{cfg: cfg, site: cfg.Sites[1], log: slog.New(slog.NewTextHandler(io.Discard, nil)), etcd: cli, reg: prometheus.NewRegistry()}
			m := a.newBackupMetrics()
			m.maxAge.Set(tt.maxAge.Seconds())
			a.refreshBackupStatus(ctx, m)
			st := a.st.Backup
			if st == nil {
				t.Fatal("no backup status")
			}
			if st.VerifySite != "osaka" || st.LastBackup != "tokyo-2" || st.NextRun.IsZero() {
				t.Errorf("status %+v: want verify site osaka (the standby), last backup tokyo-2, a next run", st)
			}
			if st.Stale != tt.wantStale {
				t.Errorf("stale %v, want %v", st.Stale, tt.wantStale)
			}
			if got := gauge(t, a.reg, "regdr_backup_last_verify_success", ""); got != tt.wantOK {
				t.Errorf("last_verify_success %v, want %v", got, tt.wantOK)
			}
			wantTS := 0.0
			if len(tt.runs) > 0 {
				wantTS = float64(passed.Finished.Unix())
				if st.LastVerifiedID != "tokyo-1" {
					t.Errorf("last verified %q, want tokyo-1", st.LastVerifiedID)
				}
			}
			if got := gauge(t, a.reg, "regdr_backup_last_verified_timestamp_seconds", ""); got != wantTS {
				t.Errorf("last_verified_timestamp %v, want %v", got, wantTS)
			}
			if tt.name == "last failed" {
				if st.LastResult != "failed" || st.LastFailure != "zone: no zone version" {
					t.Errorf("last run %q %q, want the zone failure", st.LastResult, st.LastFailure)
				}
				if got := gauge(t, a.reg, "regdr_backup_verify_phase_duration_seconds", "zone"); got != 2 {
					t.Errorf("zone phase duration %v, want 2", got)
				}
			}
		})
	}
}

// stepClock jumps to whatever time it is asked to sleep until.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return nil
}

// Two agents with the same "* * * * *" schedule: every slot is claimed
// exactly once, always by the standby (the default verify site), and the
// standby reports that there was nothing to verify.
func TestBackupScheduleRunsOnceAtTheStandby(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	prefix := "/sched"
	cfg := &config.Config{
		Etcd:      config.Etcd{Prefix: prefix},
		Sites:     []config.Site{{Name: "tokyo"}, {Name: "osaka"}, {Name: "witness", Witness: true}},
		Schedules: config.Schedules{BackupVerify: "* * * * *"},
	}
	if _, err := store.InitActive(ctx, cli, store.Keys{Prefix: prefix}, "tokyo", "test"); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 24, 10, 0, 30, 0, time.UTC)
	const slots = 8
	end := start.Add(slots * time.Minute)
	agents := map[string]*Agent{}
	var wg sync.WaitGroup
	for i, site := range []string{"tokyo", "osaka"} {
		a := &Agent{cfg: cfg, site: cfg.Sites[i], log: slog.New(slog.NewTextHandler(io.Discard, nil)), etcd: cli, reg: prometheus.NewRegistry()}
		agents[site] = a
		m := a.newBackupMetrics()
		clock := &stepClock{now: start.Add(time.Duration(i) * 3 * time.Second)}
		actx, acancel := context.WithCancel(ctx)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for clock.Now().Before(end) && actx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			acancel()
		}()
		go func() {
			defer wg.Done()
			a.runBackupSchedule(actx, clock, m)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("agents did not reach the last slot")
	}
	resp, err := cli.Get(context.Background(), prefix+"/schedule/"+backupJob+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) < slots-1 {
		t.Errorf("%d slots claimed, want at least %d", len(resp.Kvs), slots-1)
	}
	for _, kv := range resp.Kvs {
		var c schedule.Claim
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			t.Fatal(err)
		}
		if c.Owner != "agent/osaka" {
			t.Errorf("slot %s claimed by %s, want agent/osaka (the standby)", c.Slot, c.Owner)
		}
	}
	if st := agents["osaka"].st.Backup; st == nil || !strings.Contains(st.LastFailure, "catalog is empty") {
		t.Errorf("osaka backup status %+v, want the empty-catalog failure", st)
	}
}
