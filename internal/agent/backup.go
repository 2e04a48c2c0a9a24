package agent

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/schedule"
	"github.com/regdr/regdr/internal/status"
)

// backupRefresh is how often every agent re-reads the backup catalog for
// its status and metrics: the test runs at most a few times a day, and
// a minute's delay in showing its result costs nothing.
const backupRefresh = 30 * time.Second

// backupJob is the schedule job name; every agent must use the same one
// for the election to work.
const backupJob = "backup-verify"

// backupMetrics are the backup gauges plus the last scheduled run that
// failed before producing a verification (no backup in the catalog, an
// unusable config): the catalog has no record of it, yet it must show as
// a failure.
type backupMetrics struct {
	mu       sync.Mutex
	jobErr   string
	jobErrAt time.Time

	lastVerified prometheus.Gauge
	lastSuccess  prometheus.Gauge
	maxAge       prometheus.Gauge
	phase        *prometheus.GaugeVec
}

func (a *Agent) newBackupMetrics() *backupMetrics {
	labels := prometheus.Labels{"site": a.site.Name}
	m := &backupMetrics{
		lastVerified: prometheus.NewGauge(prometheus.GaugeOpts{Name: "regdr_backup_last_verified_timestamp_seconds",
			Help: "Unix time the newest passing backup restore test finished (0: none in the catalog).", ConstLabels: labels}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "regdr_backup_last_verify_success",
			Help: "1 if the newest backup restore test passed, 0 if it failed or none ran.", ConstLabels: labels}),
		maxAge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "regdr_backup_max_age_seconds",
			Help: "backup.max_age: how old the last passing restore test may be.", ConstLabels: labels}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "regdr_backup_verify_phase_duration_seconds",
			Help: "Duration of each phase of the newest backup restore test.", ConstLabels: labels}, []string{"phase"}),
	}
	a.reg.MustRegister(m.lastVerified, m.lastSuccess, m.maxAge, m.phase)
	return m
}

// startBackup runs schedules.backup_verify at the verify site (elected
// through internal/schedule, so one agent runs each slot) and, at every
// site, keeps status.Backup and the backup metrics current from the
// catalog in etcd.
func (a *Agent) startBackup(ctx context.Context, wg *sync.WaitGroup) {
	if a.etcd == nil {
		return
	}
	m := a.newBackupMetrics()
	set := a.cfg.BackupSettings()
	m.maxAge.Set(set.MaxAge.Seconds())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			a.refreshBackupStatus(ctx, m)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backupRefresh):
			}
		}
	}()
	if a.cfg.Schedules.BackupVerify == "" || a.site.Witness {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.runBackupSchedule(ctx, schedule.RealClock{}, m); err != nil && ctx.Err() == nil {
			a.log.Error("backup verify schedule stopped", "err", err)
		}
	}()
}

// runBackupSchedule runs schedules.backup_verify until ctx ends: each
// slot is claimed in etcd by at most one agent, and only the verify site
// (backup.verify_site, else the standby) claims at all.
func (a *Agent) runBackupSchedule(ctx context.Context, clock schedule.Clock, m *backupMetrics) error {
	r := &schedule.Runner{
		Client: a.etcd, Prefix: a.cfg.Etcd.Prefix, Owner: "agent/" + a.site.Name, Logger: a.log, Clock: clock,
		Eligible: func(ctx context.Context) bool {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			site, err := backup.VerifySite(sctx, a.cfg, a.etcd)
			if err != nil {
				a.log.Warn("backup verify: cannot tell the verify site; skipping slot", "err", err)
				return false
			}
			return site == a.site.Name
		},
	}
	return r.Run(ctx, schedule.Job{Name: backupJob, Cron: a.cfg.Schedules.BackupVerify, Run: func(ctx context.Context, slot time.Time) error {
		err := a.runBackupVerify(ctx)
		m.mu.Lock()
		m.jobErr, m.jobErrAt = "", time.Time{}
		if err != nil {
			m.jobErr, m.jobErrAt = err.Error(), time.Now()
		}
		m.mu.Unlock()
		a.refreshBackupStatus(ctx, m)
		return err
	}})
}

// runBackupVerify restore-tests the newest backup and records the result.
func (a *Agent) runBackupVerify(ctx context.Context) error {
	cat := backup.NewCatalog(a.etcd, a.cfg.Etcd.Prefix)
	b, err := cat.Latest(ctx)
	if err != nil {
		return err
	}
	o, err := backup.VerifyOptionsFor(a.cfg, a.etcd, a.site.Name, b)
	if err != nil {
		return err
	}
	o.Logger = a.log
	v, err := backup.Verify(ctx, o)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := backup.Record(rctx, a.etcd, a.cfg.Etcd.Prefix, "agent/"+a.site.Name, v); err != nil {
		a.log.Error("backup verification not recorded", "backup", v.BackupID, "err", err)
	}
	a.log.Info("scheduled backup restore test", "backup", v.BackupID, "result", v.Result, "failure", v.Failure())
	return nil
}

// refreshBackupStatus reads the catalog into status.Backup and the metrics.
func (a *Agent) refreshBackupStatus(ctx context.Context, m *backupMetrics) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sum, err := backup.Summarize(rctx, backup.NewCatalog(a.etcd, a.cfg.Etcd.Prefix))
	if err != nil {
		a.log.Debug("backup catalog unreadable", "err", err)
		return
	}
	set := a.cfg.BackupSettings()
	st := &status.BackupState{Schedule: a.cfg.Schedules.BackupVerify}
	if site, err := backup.VerifySite(rctx, a.cfg, a.etcd); err == nil {
		st.VerifySite = site
	}
	if s, err := schedule.Parse(st.Schedule); err == nil && st.Schedule != "" {
		st.NextRun = s.Next(time.Now())
	}
	if b := sum.LastBackup; b != nil {
		st.LastBackup, st.LastBackupTime = b.ID, b.Time
	}
	m.lastSuccess.Set(0)
	m.lastVerified.Set(0)
	if v := sum.LastVerified; v != nil {
		st.LastVerifiedID, st.LastVerifiedTime = v.BackupID, v.Finished
		m.lastVerified.Set(float64(v.Finished.Unix()))
	}
	st.Stale = sum.LastVerified == nil || time.Since(st.LastVerifiedTime) > set.MaxAge.Duration
	if v := sum.LastRun; v != nil {
		st.LastRunID, st.LastRunTime, st.LastResult, st.LastFailure = v.BackupID, v.Finished, v.Result, v.Failure()
		if v.Passed() {
			m.lastSuccess.Set(1)
		}
		m.phase.Reset()
		for _, p := range v.Phases {
			st.Phases = append(st.Phases, status.BackupPhase{Name: p.Name, Status: p.Status, Seconds: p.Duration.Seconds()})
			m.phase.WithLabelValues(p.Name).Set(p.Duration.Seconds())
		}
	}
	m.mu.Lock()
	if m.jobErr != "" && (sum.LastRun == nil || m.jobErrAt.After(sum.LastRun.Finished)) {
		st.LastResult, st.LastFailure, st.LastRunTime, st.LastRunID, st.Phases = "failed", m.jobErr, m.jobErrAt, "", nil
		m.lastSuccess.Set(0)
	}
	m.mu.Unlock()
	a.mu.Lock()
	a.st.Backup = st
	a.mu.Unlock()
}
