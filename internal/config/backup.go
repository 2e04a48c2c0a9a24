package config

// Backup describes the backups regdr takes and proves restorable.
type Backup struct{}

func (c *Config) validateBackup(v *validator) {}
