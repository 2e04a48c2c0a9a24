package status

import "time"

// BackupState is the last backup restore test this agent knows of. Every
// agent shows it (read from the catalog in etcd), not only the one that
// ran it, so `regdr status` at either site answers "are our backups
// restorable?".
type BackupState struct {
	// Schedule is schedules.backup_verify ("" when unscheduled).
	Schedule string `json:"schedule,omitempty"`
	// VerifySite is the site that runs the scheduled test now.
	VerifySite string    `json:"verify_site,omitempty"`
	NextRun    time.Time `json:"next_run,omitzero"`
	// LastBackup is the newest backup in the catalog.
	LastBackup     string    `json:"last_backup,omitempty"`
	LastBackupTime time.Time `json:"last_backup_time,omitzero"`
	// LastVerified is the backup and finish time of the newest restore
	// test that passed.
	LastVerifiedID   string    `json:"last_verified_id,omitempty"`
	LastVerifiedTime time.Time `json:"last_verified_time,omitzero"`
	// LastRun is the newest restore test, passed or not.
	LastRunID   string        `json:"last_run_id,omitempty"`
	LastRunTime time.Time     `json:"last_run_time,omitzero"`
	LastResult  string        `json:"last_result,omitempty"` // "passed" or "failed"
	LastFailure string        `json:"last_failure,omitempty"`
	Phases      []BackupPhase `json:"phases,omitempty"`
	// Stale is set when LastVerifiedTime is older than backup.max_age.
	Stale bool `json:"stale,omitempty"`
}

// BackupPhase is one phase of the last restore test.
type BackupPhase struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"` // passed, failed, unknown, skipped
	Seconds float64 `json:"seconds"`
}
