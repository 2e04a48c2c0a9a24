package failover

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

func (o operator) sign(t *testing.T, p *Plan, as string, at time.Time) approval.Approval {
	return o.Sign(t, p.Subject(), as, at)
}

// TestAuthorize covers every way a plan may be refused: no approval, the
// requester approving, the approver executing, a signature by another
// operator's key, an unknown executor, an expired plan and an altered
// plan — and the one way it passes.
func TestAuthorize(t *testing.T) {
	_, cli := etcdtest.Start(t)
	keys := store.Keys{Prefix: "/regdr"}
	alice, ac := newOperator(t, "alice")
	bob, bc := newOperator(t, "bob")
	carol, cc := newOperator(t, "carol")
	mallory, _ := newOperator(t, "mallory")
	cfg := &config.Config{Operators: []config.Operator{ac, bc, cc}}
	log := audit.New(cli, keys)
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	plan := func(id string, expires time.Time) *Plan {
		p := &Plan{ID: id, From: "tokyo", To: "osaka", Mode: Switchover, Epoch: 1, RequestedBy: "alice",
			Created: now.Add(-time.Minute).UTC(), Expires: expires.UTC()}
		p.Hash = p.ComputeHash()
		return p
	}
	approve := func(p *Plan, o operator, as string) error {
		return approval.Approve(ctx, cli, keys, log, p.Subject(), o.sign(t, p, as, now), cfg.Operators)
	}

	unapproved := plan("p-none", now.Add(time.Hour))
	if _, err := Authorize(ctx, cli, keys, cfg, unapproved, alice.sign(t, unapproved, "alice", now), now); !errors.Is(err, ErrNotApproved) {
		t.Errorf("no approval: %v, want ErrNotApproved", err)
	}

	self := plan("p-self", now.Add(time.Hour))
	if err := approve(self, alice, "alice"); !errors.Is(err, approval.ErrSelfApproval) {
		t.Errorf("requester approving: %v, want ErrSelfApproval", err)
	}

	stolen := plan("p-stolen", now.Add(time.Hour))
	if err := approve(stolen, alice, "bob"); !errors.Is(err, approval.ErrBadSignature) {
		t.Errorf("bob's approval signed with alice's key: %v, want ErrBadSignature", err)
	}
	if err := approve(stolen, mallory, "mallory"); !errors.Is(err, approval.ErrUnknownOperator) {
		t.Errorf("approval by an unknown key: %v, want ErrUnknownOperator", err)
	}

	good := plan("p-good", now.Add(time.Hour))
	if err := approve(good, bob, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := Authorize(ctx, cli, keys, cfg, good, bob.sign(t, good, "bob", now), now); err == nil || !strings.Contains(err.Error(), "may not also execute") {
		t.Errorf("approver executing: %v", err)
	}
	if _, err := Authorize(ctx, cli, keys, cfg, good, mallory.sign(t, good, "mallory", now), now); !errors.Is(err, approval.ErrUnknownOperator) {
		t.Errorf("unknown executor: %v", err)
	}
	if _, err := Authorize(ctx, cli, keys, cfg, good, carol.sign(t, good, "alice", now), now); !errors.Is(err, approval.ErrBadSignature) {
		t.Errorf("executor signing as another operator: %v", err)
	}
	altered := *good
	altered.To = "witness"
	if _, err := Authorize(ctx, cli, keys, cfg, &altered, alice.sign(t, &altered, "alice", now), now); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Errorf("altered plan: %v", err)
	}
	if _, err := Authorize(ctx, cli, keys, cfg, good, alice.sign(t, good, "alice", now), now.Add(2*time.Hour)); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("expired plan: %v, want ErrExpired", err)
	}
	v, err := Authorize(ctx, cli, keys, cfg, good, carol.sign(t, good, "carol", now), now)
	if err != nil || len(v.Approvers) != 1 || v.Approvers[0] != "bob" {
		t.Errorf("approved by bob, executed by carol: %+v %v", v, err)
	}

	// Every approval, refused ones included, is in the audit log.
	entries, err := log.List(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range entries {
		if e.Action == "approve" && strings.HasPrefix(e.Result, "refused") {
			refused++
		}
	}
	if refused < 3 {
		t.Errorf("%d refused approvals audited, want 3", refused)
	}
}

func TestPlanOK(t *testing.T) {
	tests := []struct {
		mode   string
		checks []Check
		ok     bool
	}{
		{Switchover, []Check{{Name: "target-agent", Status: Pass}, {Name: "keys test.", Status: Unknown}}, true},
		{Switchover, []Check{{Name: "source-agent", Status: Fail}}, false},
		{Disaster, []Check{{Name: "source-agent", Status: Fail}, {Name: "target-agent", Status: Pass}}, true},
		{Disaster, []Check{{Name: "zone test.", Status: Fail}}, false},
	}
	for _, tc := range tests {
		p := &Plan{Mode: tc.mode, Checks: tc.checks}
		if p.OK() != tc.ok {
			t.Errorf("%s %+v: OK %v, want %v (failed %v)", tc.mode, tc.checks, p.OK(), tc.ok, p.Failed())
		}
	}
}
