package status

// BackupState is the last backup restore test.
type BackupState struct{}
