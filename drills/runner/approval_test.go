package runner

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/approval/approvaltest"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
)

type operator struct{ approvaltest.Operator }

func newOperator(t *testing.T, name string) (operator, config.Operator) {
	o, c := approvaltest.New(t, name)
	return operator{o}, c
}

func (o operator) approve(t *testing.T, s approval.Subject, at time.Time) approval.Approval {
	return o.Sign(t, s, o.Name, at)
}

// TestProductionApproval: a production drill runs only for its requester,
// for the exact file approved, with a second operator's valid approval
// before the request expires.
func TestProductionApproval(t *testing.T) {
	_, cli := etcdtest.Start(t)
	keys := store.Keys{Prefix: "/regdr-drill-test"}
	alice, ac := newOperator(t, "alice")
	bob, bc := newOperator(t, "bob")
	_, cc := newOperator(t, "carol")
	ops := []config.Operator{ac, bc, cc}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	now := time.Now().UTC()
	raw := []byte("name: tokyo-site-loss\ntarget: {production: true}\nsteps: [{action: stop-load}]\n")

	if _, err := CheckApproved(ctx, cli, keys, "tokyo-site-loss", raw, "alice", ops, now); !errors.Is(err, ErrNotApproved) || !strings.Contains(err.Error(), "no request") {
		t.Fatalf("without a request: %v", err)
	}
	s := NewRequest("tokyo-site-loss", raw, "alice", now, time.Hour)
	if err := PutRequest(ctx, cli, keys, s); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckApproved(ctx, cli, keys, "tokyo-site-loss", raw, "alice", ops, now); !errors.Is(err, approval.ErrNotEnough) {
		t.Fatalf("requested, not approved: %v", err)
	}
	log := audit.New(cli, keys)
	// The requester cannot approve her own drill.
	if err := approval.Approve(ctx, cli, keys, log, s, alice.approve(t, s, now), ops); !errors.Is(err, approval.ErrSelfApproval) {
		t.Fatalf("self approval: %v", err)
	}
	if err := approval.Approve(ctx, cli, keys, log, s, bob.approve(t, s, now), ops); err != nil {
		t.Fatal(err)
	}
	v, err := CheckApproved(ctx, cli, keys, "tokyo-site-loss", raw, "alice", ops, now)
	if err != nil || len(v.Approvers) != 1 || v.Approvers[0] != "bob" {
		t.Fatalf("approved: %+v %v", v, err)
	}
	for _, tc := range []struct {
		name, runner string
		raw          []byte
		now          time.Time
		want         string
	}{
		{"approver runs", "bob", raw, now, "requested by alice, not bob"},
		{"someone else runs", "carol", raw, now, "requested by alice, not carol"},
		{"file edited", "alice", append([]byte("# edited\n"), raw...), now, "changed since it was requested"},
		{"expired", "alice", raw, now.Add(2 * time.Hour), "expired"},
	} {
		_, err := CheckApproved(ctx, cli, keys, "tokyo-site-loss", tc.raw, tc.runner, ops, tc.now)
		if !errors.Is(err, ErrNotApproved) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A new request (same name) starts without approvals.
	s2 := NewRequest("tokyo-site-loss", raw, "alice", now.Add(time.Minute), time.Hour)
	if err := PutRequest(ctx, cli, keys, s2); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckApproved(ctx, cli, keys, "tokyo-site-loss", raw, "alice", ops, now); !errors.Is(err, approval.ErrNotEnough) {
		t.Errorf("renewed request inherited approvals: %v", err)
	}
}
