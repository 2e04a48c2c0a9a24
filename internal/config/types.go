// Package config holds the deployment description: one YAML file that names
// the sites, the etcd cluster, the zones, the public secondaries, the gate
// thresholds, the operators and the schedules. Every regdr process (agent,
// operator CLI, lab) reads the same file, so a problem found by
// `regdr config check` is a problem every process would have hit.
package config

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is one deployment. Field names in YAML are snake_case; unknown
// fields are errors (a typo in a threshold must not silently fall back to a
// default).
type Config struct {
	// Deployment names this deployment in logs, metrics and audit records.
	Deployment string      `yaml:"deployment"`
	Etcd       Etcd        `yaml:"etcd"`
	Sites      []Site      `yaml:"sites"`
	Zones      []Zone      `yaml:"zones"`
	TSIGKeys   []TSIGKey   `yaml:"tsig_keys"`
	Secondary  []Secondary `yaml:"secondaries"`
	Gates      Gates       `yaml:"gates"`
	Operators  []Operator  `yaml:"operators"`
	Schedules  Schedules   `yaml:"schedules"`
	Agent      Agent       `yaml:"agent"`
	// Keys tunes DNSSEC key transport between sites (keys.go).
	Keys *Keys `yaml:"keys,omitempty"`
	// Backup describes the backups regdr takes and proves (backup.go).
	Backup *Backup `yaml:"backup,omitempty"`
	// Failover tunes plans, approvals, fencing and hooks (failover.go).
	Failover *Failover `yaml:"failover,omitempty"`

	// path is the file this was loaded from; relative file names in the
	// config resolve against its directory.
	path string
}

// Etcd is how agents and the CLI reach the coordination cluster.
type Etcd struct {
	Endpoints    []string `yaml:"endpoints"`
	Prefix       string   `yaml:"prefix"`
	DialTimeout  Duration `yaml:"dial_timeout"`
	TLS          *TLS     `yaml:"tls,omitempty"`
	Username     string   `yaml:"username,omitempty"`
	PasswordFile string   `yaml:"password_file,omitempty"`
}

// TLS is client TLS for etcd. All files are PEM.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Site is one data centre. A witness site holds only an etcd member and an
// agent: no database, no DNS.
type Site struct {
	Name string `yaml:"name"`
	// Witness marks the tie-breaker site (etcd member only).
	Witness bool `yaml:"witness,omitempty"`
	// AgentAddr is host:port of the agent's HTTP API (/healthz, /metrics,
	// /v1/status).
	AgentAddr string `yaml:"agent_addr"`
	// GossipAddr is host:port memberlist binds to and advertises.
	GossipAddr string `yaml:"gossip_addr"`
	// Postgres is a libpq/pgx connection string for this site's registry
	// database, as the agent reaches it.
	Postgres string `yaml:"postgres,omitempty"`
	// DNSAddr is host:port of this site's hidden primary (served by the
	// agent: AXFR/IXFR with TSIG, NOTIFY).
	DNSAddr string `yaml:"dns_addr,omitempty"`
	// KeyDir holds this site's DNSSEC private keys (BIND K*.private files).
	KeyDir string `yaml:"key_dir,omitempty"`
	// ZoneDir is where the registry's generator drops zone files for this
	// site's agent to pick up (atomic rename only), and where the agent
	// keeps its zone store.
	ZoneDir string `yaml:"zone_dir,omitempty"`
	// Identity is the site's key-transport identity (keys.go).
	Identity *SiteIdentity `yaml:"identity,omitempty"`
	// PGControl is how this site's agent controls its own PostgreSQL
	// server for promotion, fencing and rejoin (failover.go).
	PGControl *PGControl `yaml:"pg_control,omitempty"`
}

// Zone is one zone regdr replicates and gates.
type Zone struct {
	Origin string `yaml:"origin"`
	// Source is where the active site's agent gets new versions: "file"
	// (a file named <origin>zone in the site's zone_dir, picked up on
	// rename) or "axfr" (from SourceAddr).
	Source     string `yaml:"source"`
	SourceAddr string `yaml:"source_addr,omitempty"`
	// TSIGKey names an entry of tsig_keys used for every transfer of this
	// zone (between sites and to the secondaries).
	TSIGKey string `yaml:"tsig_key"`
}

// TSIGKey is a shared secret for zone transfers. The secret itself lives in
// a file (0600), never in the config, so configs can be committed.
type TSIGKey struct {
	Name       string `yaml:"name"`
	Algorithm  string `yaml:"algorithm"`
	SecretFile string `yaml:"secret_file"`
}

// Secondary is a public name server that transfers zones from the active
// site's hidden primary.
type Secondary struct {
	Name string `yaml:"name"`
	Addr string `yaml:"addr"`
	// Notify: send NOTIFY to this secondary on every new version.
	Notify bool `yaml:"notify"`
}

// Gates are the thresholds of the zone publication safety gates. Defaults
// are chosen so that every incident in INCIDENTS.md would have been stopped.
type Gates struct {
	// MaxRemovedPercent of delegations removed in one version.
	MaxRemovedPercent float64 `yaml:"max_removed_percent"`
	// MaxAddedPercent of delegations added in one version.
	MaxAddedPercent float64 `yaml:"max_added_percent"`
	// MaxChangedPercent of delegations whose NS or DS changed.
	MaxChangedPercent float64 `yaml:"max_changed_percent"`
	// MinSignatureValidity is the least remaining RRSIG lifetime accepted.
	MinSignatureValidity Duration `yaml:"min_signature_validity"`
	// ReconcileQuery returns the number of delegations the database
	// expects; empty disables reconciliation.
	ReconcileQuery string `yaml:"reconcile_query,omitempty"`
	// ReconcileTolerance is how many delegations the zone may differ by.
	ReconcileTolerance int `yaml:"reconcile_tolerance"`
	// RequiredNames must be present in every version.
	RequiredNames []string `yaml:"required_names,omitempty"`
}

// Operator is a person who may approve operations; approvals are signed with
// the SSH key whose public half is here.
type Operator struct {
	Name         string `yaml:"name"`
	SSHPublicKey string `yaml:"ssh_public_key"`
}

// Schedules are cron expressions (5 fields) for recurring work.
type Schedules struct {
	BackupVerify string  `yaml:"backup_verify,omitempty"`
	Drills       []Drill `yaml:"drills,omitempty"`
}

// Drill is one scheduled drill.
type Drill struct {
	Scenario string `yaml:"scenario"`
	Cron     string `yaml:"cron"`
}

// Agent tunes the per-site agent.
type Agent struct {
	// HeartbeatInterval is how often the active agent writes the
	// replication heartbeat row.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// Gossip selects memberlist timers: "wan" (default, across sites),
	// "lan", or "local" (the one-machine lab: fast failure detection).
	Gossip string `yaml:"gossip"`
	// LeaseTTL is the etcd lease the active agent keeps; losing it for
	// longer fences the site.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// Duration is a time.Duration written as "2s", "500ms", "15m" in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML reads a Go duration string. A bare number is refused: "5"
// could mean seconds or nanoseconds, and guessing wrong on a lease TTL
// fences a healthy site.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration like \"2s\", got %s", describeNode(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("bad duration %q: want a number with a unit (ms, s, m, h), like \"2s\"", n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the shortest form that reads back the same: "72h"
// rather than "72h0m0s", so generated configs stay readable.
func (d Duration) MarshalYAML() (any, error) {
	return formatDuration(d.Duration), nil
}

func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
