package failover

import (
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
)

// Approvers is how many operators besides the requester must approve a
// plan: with the requester, two people.
const Approvers = 1

// Authorize decides whether executor may run plan p now: the plan's hash
// is intact, it has not expired, an operator other than the requester
// approved it with their SSH key, and the executor (who proves who they
// are by signing the same plan) is a configured operator and not one of
// the approvers.
func Authorize(ctx context.Context, kv clientv3.KV, keys store.Keys, cfg *config.Config, p *Plan, exec approval.Approval, now time.Time) (approval.Verdict, error) {
	if got := p.ComputeHash(); got != p.Hash {
		return approval.Verdict{}, fmt.Errorf("plan %s: stored hash %s does not match its content (%s): the plan was altered", p.ID, p.Hash, got)
	}
	s := p.Subject()
	if err := verifyOperator(cfg, s, exec); err != nil {
		return approval.Verdict{}, fmt.Errorf("executor: %w", err)
	}
	list, err := approval.List(ctx, kv, keys, s)
	if err != nil {
		return approval.Verdict{}, err
	}
	v, err := approval.Check(s, list, cfg.Operators, Approvers, now)
	if err != nil {
		return v, fmt.Errorf("%w: %w", ErrNotApproved, err)
	}
	if slices.Contains(v.Approvers, exec.Operator) {
		return v, fmt.Errorf("%w: %s approved plan %s and may not also execute it (two people: one approves, another executes)", ErrNotApproved, exec.Operator, p.ID)
	}
	return v, nil
}

// verifyOperator checks that a's signature over s's message is by the
// configured key of a.Operator.
func verifyOperator(cfg *config.Config, s approval.Subject, a approval.Approval) error {
	for _, o := range cfg.Operators {
		if o.Name != a.Operator {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o.SSHPublicKey))
		if err != nil {
			return fmt.Errorf("operator %s key in the config: %w", o.Name, err)
		}
		if err := approval.Verify(pub, approval.Namespace, s.Message(), []byte(a.Signature)); err != nil {
			return fmt.Errorf("%s's signature: %w", a.Operator, err)
		}
		return nil
	}
	return fmt.Errorf("%q: %w", a.Operator, approval.ErrUnknownOperator)
}
