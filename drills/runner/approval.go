package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
)

// KindDrill is the approval kind of a production drill: an operator
// requests it, a second operator approves exactly that scenario file, and
// only then may the requester run it with --production.
const KindDrill = "drill"

// DefaultRequestTTL is how long a drill request may wait for its approval
// and its run: long enough to find a second operator, short enough that
// an approval from last week does not cover today's state of the world.
const DefaultRequestTTL = 2 * time.Hour

// ErrNotApproved: the production drill lacks a valid request or approval.
var ErrNotApproved = errors.New("production drill not approved")

// RequestKey is where the pending request of drill name is kept.
func RequestKey(keys store.Keys, name string) string {
	return strings.TrimSuffix(keys.Active(), "/active") + "/drill-requests/" + name
}

// Digest is the SHA-256 of the scenario file's bytes: an approval covers
// this exact file, so an edit after the approval needs a new one.
func Digest(raw []byte) string {
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:])
}

// NewRequest is the subject a second operator approves.
func NewRequest(name string, raw []byte, requester string, now time.Time, ttl time.Duration) approval.Subject {
	if ttl <= 0 {
		ttl = DefaultRequestTTL
	}
	return approval.Subject{Kind: KindDrill, ID: name, Digest: Digest(raw), Requester: requester, Expires: now.Add(ttl).UTC()}
}

// PutRequest stores (or replaces) the request; approvals are bound to the
// subject's hash, so a replaced request starts with none.
func PutRequest(ctx context.Context, kv clientv3.KV, keys store.Keys, s approval.Subject) error {
	if err := s.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, RequestKey(keys, s.ID), string(b)); err != nil {
		return fmt.Errorf("store drill %s request: %w", s.ID, err)
	}
	return nil
}

// GetRequest reads the pending request of drill name.
func GetRequest(ctx context.Context, kv clientv3.KV, keys store.Keys, name string) (approval.Subject, error) {
	var s approval.Subject
	_, found, err := store.GetJSON(ctx, kv, RequestKey(keys, name), &s)
	if err != nil {
		return s, fmt.Errorf("drill %s request: %w", name, err)
	}
	if !found {
		return s, fmt.Errorf("drill %s has no request: run `regdr drill request FILE` first: %w", name, ErrNotApproved)
	}
	return s, nil
}

// CheckApproved decides whether runner may run the production drill whose
// file holds raw: a request for this exact file must exist, not be
// expired, have been made by runner, and carry a valid approval by another
// configured operator (two people in all).
func CheckApproved(ctx context.Context, kv clientv3.KV, keys store.Keys, name string, raw []byte, runner string, operators []config.Operator, now time.Time) (approval.Verdict, error) {
	s, err := GetRequest(ctx, kv, keys, name)
	if err != nil {
		return approval.Verdict{}, err
	}
	if s.Digest != Digest(raw) {
		return approval.Verdict{}, fmt.Errorf("drill %s: the scenario file changed since it was requested (approved digest %.12s, file %.12s): request it again: %w",
			name, s.Digest, Digest(raw), ErrNotApproved)
	}
	if s.Requester != runner {
		return approval.Verdict{}, fmt.Errorf("drill %s was requested by %s, not %s: the requester runs it: %w", name, s.Requester, runner, ErrNotApproved)
	}
	as, err := approval.List(ctx, kv, keys, s)
	if err != nil {
		return approval.Verdict{}, err
	}
	v, err := approval.Check(s, as, operators, 1, now)
	if err != nil {
		return v, fmt.Errorf("drill %s: %w: %w", name, err, ErrNotApproved)
	}
	if slices.Contains(v.Approvers, runner) {
		return v, fmt.Errorf("drill %s: %s approved it and cannot also run it: %w", name, runner, ErrNotApproved)
	}
	return v, nil
}
