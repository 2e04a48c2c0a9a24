package status

import "time"

// FenceState is whether a site's agent fenced its own database: it could
// not confirm its site is active under the current epoch (etcd lost for
// longer than the lease, or another site was made active).
type FenceState struct {
	Fenced bool      `json:"fenced"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// LastConfirmed is when etcd last confirmed this site active.
	LastConfirmed time.Time `json:"last_confirmed,omitzero"`
	Error         string    `json:"error,omitempty"`
}

// SyncState is synchronous replication as the active site's agent manages
// it (failover.synchronous).
type SyncState struct {
	// Setting is synchronous_standby_names as last seen ("" = async).
	Setting string `json:"setting"`
	// Action is what the agent last did: none, degrade or restore.
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Rule states when the agent degrades and restores.
	Rule string    `json:"rule"`
	At   time.Time `json:"at"`
}
