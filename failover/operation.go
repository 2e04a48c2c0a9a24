package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/store"
)

// Operation states.
const (
	StatePlanned = "planned"
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Step states.
const (
	StepRunning = "running"
	StepDone    = "done"
	StepFailed  = "failed"
	StepSkipped = "skipped"
)

// StepRecord is one journalled step.
type StepRecord struct {
	Name     string    `json:"name"`
	Status   string    `json:"status"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Detail   string    `json:"detail,omitempty"`
}

// Duration of a finished step.
func (s StepRecord) Duration() time.Duration {
	if s.Finished.IsZero() {
		return 0
	}
	return s.Finished.Sub(s.Started)
}

// Operation is a plan and the journal of its execution, kept in etcd at
// keys.Operation(plan id).
type Operation struct {
	Plan     Plan         `json:"plan"`
	State    string       `json:"state"`
	Executor string       `json:"executor,omitempty"`
	Started  time.Time    `json:"started,omitzero"`
	Finished time.Time    `json:"finished,omitzero"`
	Steps    []StepRecord `json:"steps,omitempty"`
	Error    string       `json:"error,omitempty"`
	// Lost records the disaster loss window measured at execution.
	Lost *LossWindow `json:"lost,omitempty"`
	// RTO is from the start of execution to the end of the outside
	// verification.
	RTO time.Duration `json:"rto_ns,omitempty"`
}

// LossWindow is what a disaster failover may have lost.
type LossWindow struct {
	HeartbeatAgeSeconds float64 `json:"heartbeat_age_seconds"`
	LastLagBytes        int64   `json:"last_lag_bytes"`
	ReplayLSN           string  `json:"replay_lsn,omitempty"`
}

// Step returns the journal record of name.
func (o *Operation) Step(name string) (StepRecord, bool) {
	for _, s := range o.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepRecord{}, false
}

func (o *Operation) setStep(r StepRecord) {
	for i, s := range o.Steps {
		if s.Name == r.Name {
			o.Steps[i] = r
			return
		}
	}
	o.Steps = append(o.Steps, r)
}

// SavePlan stores a new plan as a planned operation.
func SavePlan(ctx context.Context, kv clientv3.KV, keys store.Keys, p *Plan) error {
	return store.CreateJSON(ctx, kv, keys.Operation(p.ID), Operation{Plan: *p, State: StatePlanned})
}

// Load reads an operation and the revision to update it at.
func Load(ctx context.Context, kv clientv3.KV, keys store.Keys, id string) (*Operation, int64, error) {
	var op Operation
	rev, found, err := store.GetJSON(ctx, kv, keys.Operation(id), &op)
	if err != nil {
		return nil, 0, fmt.Errorf("read operation %s: %w", id, err)
	}
	if !found {
		return nil, 0, fmt.Errorf("no operation %s in etcd (plan it with regdr failover plan)", id)
	}
	return &op, rev, nil
}

// RunningOperation finds an operation that started and did not finish.
func RunningOperation(ctx context.Context, kv clientv3.KV, keys store.Keys) (*Operation, bool, error) {
	resp, err := kv.Get(ctx, keys.Operations(), clientv3.WithPrefix())
	if err != nil {
		return nil, false, err
	}
	for _, kvp := range resp.Kvs {
		var op Operation
		if json.Unmarshal(kvp.Value, &op) != nil {
			continue
		}
		if op.State == StateRunning {
			return &op, true, nil
		}
	}
	return nil, false, nil
}

// List returns every operation, newest first.
func List(ctx context.Context, kv clientv3.KV, keys store.Keys) ([]Operation, error) {
	resp, err := kv.Get(ctx, keys.Operations(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend))
	if err != nil {
		return nil, err
	}
	var out []Operation
	for _, kvp := range resp.Kvs {
		var op Operation
		if json.Unmarshal(kvp.Value, &op) == nil {
			out = append(out, op)
		}
	}
	return out, nil
}
