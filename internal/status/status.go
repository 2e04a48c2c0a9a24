// Package status is the shape of what regdr reports about itself: one
// agent's view (served at /v1/status and condensed into gossip) and the
// whole deployment's view that `regdr status` prints. It holds no I/O so the
// agent, the CLI and the tests agree on one vocabulary.
package status

import "time"

// Agent is what one site's agent reports about its site and what it sees of
// the others.
type Agent struct {
	Site    string    `json:"site"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Now     time.Time `json:"now"`
	// Role is the site's role under the active-site record the agent last
	// confirmed: "active", "standby" or "witness" ("unknown" before the
	// first read).
	Role       string      `json:"role"`
	ActiveSite string      `json:"active_site,omitempty"`
	Epoch      uint64      `json:"epoch"`
	Etcd       EtcdView    `json:"etcd"`
	Health     string      `json:"health"`
	Problems   []string    `json:"problems,omitempty"`
	Postgres   *Postgres   `json:"postgres,omitempty"`
	Zones      []ZoneState `json:"zones,omitempty"`
	Frozen     []string    `json:"frozen,omitempty"`
	Peers      []Peer      `json:"peers"`
	// Secondaries is what the active site last verified at each public
	// secondary after a publication.
	Secondaries []SecondaryCheck `json:"secondaries,omitempty"`
	// Keys is the site's DNSSEC key inventory and proofs (keys.go).
	Keys *KeysState `json:"keys,omitempty"`
	// Backup is the last backup restore test this agent knows of (backup.go).
	Backup *BackupState `json:"backup,omitempty"`
	// Fence is the site's fencing state (failover.go).
	Fence *FenceState `json:"fence,omitempty"`
	// Sync is synchronous replication at the active site (failover.go).
	Sync *SyncState `json:"sync,omitempty"`
}

// SecondaryCheck is one verification of what a public secondary actually
// serves (RIPE 2017: nobody watched the published output).
type SecondaryCheck struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Zone   string `json:"zone"`
	Serial uint32 `json:"serial"`
	// Published is the serial the active site published; the secondary
	// should serve it (or newer).
	Published  uint32    `json:"published"`
	Sampled    int       `json:"sampled"`
	Mismatches []string  `json:"mismatches,omitempty"`
	Error      string    `json:"error,omitempty"`
	At         time.Time `json:"at"`
}

// EtcdView is whether the agent can reach the coordination cluster.
type EtcdView struct {
	Reachable bool      `json:"reachable"`
	Error     string    `json:"error,omitempty"`
	LastOK    time.Time `json:"last_ok,omitzero"`
}

// Postgres is the site's registry database as the agent last measured it.
type Postgres struct {
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Role is "primary" or "standby" as PostgreSQL itself says
	// (pg_is_in_recovery), which may disagree with the site role during an
	// operation; status shows both.
	Role     string `json:"role,omitempty"`
	Timeline uint32 `json:"timeline,omitempty"`
	// LSN is the current WAL insert position on a primary, the replay
	// position on a standby.
	LSN        string `json:"lsn,omitempty"`
	ReceiveLSN string `json:"receive_lsn,omitempty"`
	// HeartbeatAgeSeconds (standby) is how old the newest replicated
	// heartbeat row is: an upper bound of the data-loss window if the
	// primary died now.
	HeartbeatAgeSeconds *float64 `json:"heartbeat_age_seconds,omitempty"`
	// LastReplay (standby) is the commit time of the last replayed
	// transaction; it ages while the primary is idle, so lag in seconds
	// comes from the heartbeat, not from it.
	LastReplay *time.Time `json:"last_replay,omitempty"`
	Replicas   []Replica  `json:"replicas,omitempty"`
	// Slots (primary) are its physical replication slots.
	Slots      []Slot    `json:"slots,omitempty"`
	MeasuredAt time.Time `json:"measured_at"`
}

// Replica is one row of the primary's pg_stat_replication: lag as the
// primary measures it, which is what gates a failover (never a standby
// read).
type Replica struct {
	Name       string   `json:"name"`
	State      string   `json:"state"`
	SyncState  string   `json:"sync_state"`
	SentLSN    string   `json:"sent_lsn"`
	WriteLSN   string   `json:"write_lsn,omitempty"`
	FlushLSN   string   `json:"flush_lsn,omitempty"`
	ReplayLSN  string   `json:"replay_lsn"`
	LagBytes   int64    `json:"lag_bytes"`
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
}

// Slot is one physical replication slot on a primary.
type Slot struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	// WALStatus is reserved, extended, unreserved or lost (lost: the
	// standby can no longer catch up and needs a reseed).
	WALStatus     string `json:"wal_status"`
	RetainedBytes int64  `json:"retained_bytes"`
}

// ZoneState is the version of one zone a site serves.
type ZoneState struct {
	Origin   string    `json:"origin"`
	Serial   uint32    `json:"serial"`
	Digest   string    `json:"digest,omitempty"`
	Source   string    `json:"source,omitempty"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	Error    string    `json:"error,omitempty"`
	// Blocked is the newest version the gates refused; the site keeps
	// serving Serial.
	Blocked *BlockedVersion `json:"blocked,omitempty"`
	// Frozen: publication is held; PendingSerial waits for the thaw.
	Frozen        bool   `json:"frozen,omitempty"`
	PendingSerial uint32 `json:"pending_serial,omitempty"`
}

// BlockedVersion is a zone version the safety gates refused.
type BlockedVersion struct {
	Serial   uint32    `json:"serial"`
	Digest   string    `json:"digest"`
	Source   string    `json:"source"`
	Gates    []string  `json:"gates"`
	Findings []string  `json:"findings"`
	At       time.Time `json:"at"`
}

// Peer is another agent as this agent sees it through memberlist gossip.
type Peer struct {
	Site  string `json:"site"`
	Alive bool   `json:"alive"`
	State string `json:"state"`
	Addr  string `json:"addr,omitempty"`
	// Meta is what that agent last gossiped about itself; present while
	// the peer is in the member list.
	Meta *Meta `json:"meta,omitempty"`
}

// Meta is the condensed state every agent gossips (memberlist node meta,
// at most 512 bytes, hence the short keys). It is what `regdr status` falls
// back on when etcd cannot be reached.
type Meta struct {
	Site       string            `json:"s"`
	Role       string            `json:"r"`
	ActiveSite string            `json:"a,omitempty"`
	Epoch      uint64            `json:"e"`
	Health     string            `json:"h"`
	PGRole     string            `json:"p,omitempty"`
	Timeline   uint32            `json:"t,omitempty"`
	LSN        string            `json:"l,omitempty"`
	LagBytes   *int64            `json:"lb,omitempty"`
	Serials    map[string]uint32 `json:"z,omitempty"`
}

// Deployment is the whole deployment as `regdr status` assembles it.
type Deployment struct {
	Deployment string    `json:"deployment"`
	Time       time.Time `json:"time"`
	// Source says where roles came from: "etcd", or "memberlist" when etcd
	// could not be reached and the agents' gossip was used instead.
	Source     string    `json:"source"`
	Etcd       EtcdView  `json:"etcd"`
	ActiveSite string    `json:"active_site,omitempty"`
	Epoch      uint64    `json:"epoch"`
	Since      time.Time `json:"since,omitzero"`
	Frozen     []string  `json:"frozen,omitempty"`
	Sites      []SiteRow `json:"sites"`
	// Secondaries is what the active site last verified at each public
	// secondary.
	Secondaries []SecondaryCheck `json:"secondaries,omitempty"`
	// Fenced lists sites whose agent fenced its database, with why.
	Fenced []string `json:"fenced,omitempty"`
	// Sync is the active site's synchronous replication, when managed.
	Sync *SyncState `json:"sync,omitempty"`
	// RPOSeconds is the data-loss window if the active site died now: the
	// age of the newest heartbeat replicated to the standby.
	RPOSeconds *float64 `json:"rpo_seconds,omitempty"`
	// Backup is the catalog's view of backup restore tests.
	Backup *BackupState `json:"backup,omitempty"`
	Notes  []string     `json:"notes,omitempty"`
}

// SiteRow is one line of the status table (patronictl list style).
type SiteRow struct {
	Site       string `json:"site"`
	Role       string `json:"role"`
	AgentAlive bool   `json:"agent_alive"`
	// AgentSeen says how liveness was established: "http" (answered),
	// "gossip" (did not answer, but a peer sees it alive) or "down".
	AgentSeen  string            `json:"agent_seen"`
	Health     string            `json:"health,omitempty"`
	PGRole     string            `json:"pg_role,omitempty"`
	PGState    string            `json:"pg_state,omitempty"`
	Timeline   uint32            `json:"timeline,omitempty"`
	LSN        string            `json:"lsn,omitempty"`
	LagBytes   *int64            `json:"lag_bytes,omitempty"`
	LagSeconds *float64          `json:"lag_seconds,omitempty"`
	Serials    map[string]uint32 `json:"serials,omitempty"`
	Problems   []string          `json:"problems,omitempty"`
}
