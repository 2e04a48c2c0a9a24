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
