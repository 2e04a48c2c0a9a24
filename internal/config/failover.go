package config

// Failover tunes plans, approvals, fencing and hooks.
type Failover struct{}

// PGControl is how a site's agent controls its own PostgreSQL server.
type PGControl struct{}

func (c *Config) validateFailover(v *validator) {}
