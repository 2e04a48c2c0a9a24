package config

import (
	"strconv"
	"time"
)

// Failover tunes plans, approvals, fencing and hooks.
type Failover struct {
	// PlanTTL is how long a plan may wait for approval and execution; a
	// plan binds facts (lag, serials) that go stale.
	PlanTTL Duration `yaml:"plan_ttl"`
	// MaxLagBytes is the largest replay lag the preflight accepts for a
	// switchover.
	MaxLagBytes int64 `yaml:"max_lag_bytes"`
	// MaxBackupAge is the oldest last verified backup the preflight
	// accepts.
	MaxBackupAge Duration `yaml:"max_backup_age"`
	// Sample is how many delegations the outside verification compares
	// at each secondary.
	Sample int `yaml:"sample"`
	// Resolver is a validating resolver (host:port) that trusts the zone's
	// KSK; the outside verification asks it for the zone's SOA and
	// requires a secure answer. Empty skips that check (reported).
	Resolver string `yaml:"resolver,omitempty"`
	// Hooks run operator commands at named points of an operation.
	Hooks Hooks `yaml:"hooks,omitempty"`
	// Synchronous makes the active site's agent keep the standby sites in
	// synchronous_standby_names, so an acknowledged commit is on both
	// sites. The rule for degrading: when no standby has streamed for
	// SyncDegradeAfter, the agent clears the setting (commits stop
	// waiting; a disaster failover may then lose writes) and sets it
	// again as soon as a standby streams, caught up.
	Synchronous      bool     `yaml:"synchronous,omitempty"`
	SyncDegradeAfter Duration `yaml:"sync_degrade_after,omitempty"`
}

// Hooks are commands (argv, no shell) run with the operation's facts in
// REGDR_* environment variables. A failing hook fails its step.
type Hooks struct {
	BeforeFreeze [][]string `yaml:"before_freeze,omitempty"`
	AfterPromote [][]string `yaml:"after_promote,omitempty"`
	AfterVerify  [][]string `yaml:"after_verify,omitempty"`
}

// PGControl is how a site's agent controls its own PostgreSQL server to
// rejoin it as a standby after the other site took over.
type PGControl struct {
	// DataDir is the server's PGDATA; its owner runs the binaries.
	DataDir string `yaml:"data_dir"`
	// BinDir holds pg_ctl, pg_rewind, pg_controldata.
	BinDir string `yaml:"bin_dir"`
	// LogFile is where pg_ctl sends the server log.
	LogFile string `yaml:"log_file,omitempty"`
	// ReplicationConnInfo is how the other site's server streams from
	// this one when this site is primary (primary_conninfo there).
	ReplicationConnInfo string `yaml:"replication_conninfo"`
	// Slot is the physical replication slot this site's server uses when
	// it is a standby.
	Slot string `yaml:"slot"`
	// SalvageDir receives the salvage files of writes lost at a rejoin.
	SalvageDir string `yaml:"salvage_dir"`
}

// FailoverOrDefault returns the failover section with defaults filled.
func (c *Config) FailoverOrDefault() Failover {
	f := Failover{}
	if c.Failover != nil {
		f = *c.Failover
	}
	if f.PlanTTL.Duration == 0 {
		f.PlanTTL.Duration = 15 * time.Minute
	}
	if f.MaxLagBytes == 0 {
		f.MaxLagBytes = 16 << 20
	}
	if f.MaxBackupAge.Duration == 0 {
		f.MaxBackupAge.Duration = 26 * time.Hour
	}
	if f.Sample == 0 {
		f.Sample = 20
	}
	if f.SyncDegradeAfter.Duration == 0 {
		f.SyncDegradeAfter.Duration = 10 * time.Second
	}
	return f
}

func (c *Config) validateFailover(v *validator) {
	if f := c.Failover; f != nil {
		if f.PlanTTL.Duration < 0 {
			v.add("failover.plan_ttl", "must not be negative")
		}
		if f.MaxLagBytes < 0 {
			v.add("failover.max_lag_bytes", "must not be negative")
		}
		if f.Sample < 0 {
			v.add("failover.sample", "must not be negative")
		}
		if f.Resolver != "" {
			v.addr("failover.resolver", f.Resolver)
		}
		for name, hs := range map[string][][]string{"before_freeze": f.Hooks.BeforeFreeze, "after_promote": f.Hooks.AfterPromote, "after_verify": f.Hooks.AfterVerify} {
			for i, h := range hs {
				if len(h) == 0 || h[0] == "" {
					v.add(indexPath("failover.hooks."+name, i), "empty command")
				}
			}
		}
	}
	for i, s := range c.Sites {
		p := s.PGControl
		if p == nil {
			continue
		}
		path := indexPath("sites", i) + ".pg_control"
		if s.Witness {
			v.add(path, "a witness site has no database")
			continue
		}
		v.require(path+".data_dir", p.DataDir)
		v.require(path+".bin_dir", p.BinDir)
		v.require(path+".replication_conninfo", p.ReplicationConnInfo)
		v.require(path+".slot", p.Slot)
		v.require(path+".salvage_dir", p.SalvageDir)
	}
}

func indexPath(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }
