package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
)

// Audit action and results written by Approve.
const (
	auditAction  = "approve"
	resultOK     = "ok"
	resultRefuse = "refused: "
)

// rollbackTimeout bounds the removal of an approval whose audit entry
// could not be written; it runs even when the caller's ctx has ended.
const rollbackTimeout = 5 * time.Second

// Root is the etcd prefix under which every approval lives, next to the
// other regdr keys (store.Keys' prefix + "/approvals/").
func Root(keys store.Keys) string {
	// store.Keys keeps its prefix logic private; Active() is that prefix
	// plus "/active", so this follows any change to the default.
	return strings.TrimSuffix(keys.Active(), "/active") + "/approvals/"
}

// SubjectPrefix is where the approvals of s live:
// Root/<kind>/<id>/<s.Hash()>/. The hash covers the whole message, so a
// subject regenerated under the same id with another digest, requester or
// expiry has its own approvals and never inherits the old ones.
func SubjectPrefix(keys store.Keys, s Subject) string {
	return Root(keys) + url.PathEscape(s.Kind) + "/" + url.PathEscape(s.ID) + "/" + s.Hash() + "/"
}

// Key is where operator's approval of s is kept; one per operator and
// subject.
func Key(keys store.Keys, s Subject, operator string) string {
	return SubjectPrefix(keys, s) + url.PathEscape(operator)
}

// Put stores a as an approval of s, only if a.Operator has none stored
// for s yet (otherwise it wraps store.ErrExists). Before storing it
// checks what it can without the operator list: s is valid, a names an
// operator other than the requester, a.At is set and not after s.Expires,
// and a.Signature verifies over s.Message with the key inside it. That it
// is a.Operator's configured key is Approve's and Check's to decide; use
// Approve, which also audits.
func Put(ctx context.Context, kv clientv3.KV, keys store.Keys, s Subject, a Approval) error {
	if err := precheck(s, a); err != nil {
		return fmt.Errorf("put approval of %s by %q: %w", s.Target(), a.Operator, err)
	}
	if _, err := verifyEmbedded(Namespace, s.Message(), []byte(a.Signature)); err != nil {
		return fmt.Errorf("put approval of %s by %q: %w", s.Target(), a.Operator, err)
	}
	a.At = a.At.UTC()
	return store.CreateJSON(ctx, kv, Key(keys, s, a.Operator), a)
}

// precheck is what Put and Approve refuse before looking at signatures.
func precheck(s Subject, a Approval) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := checkName(a.Operator, maxNameLen); err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	if a.Operator == s.Requester {
		return fmt.Errorf("%q requested %s: %w", a.Operator, s.Target(), ErrSelfApproval)
	}
	if a.At.IsZero() {
		return errors.New("approval time is unset")
	}
	if a.At.After(s.Expires) {
		return fmt.Errorf("given at %s, after expiry at %s: %w",
			a.At.UTC().Format(time.RFC3339), s.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	return nil
}

// List returns the stored approvals of s in key order (by operator). It
// does not judge them; pass them to Check.
func List(ctx context.Context, kv clientv3.KV, keys store.Keys, s Subject) ([]Approval, error) {
	prefix := SubjectPrefix(keys, s)
	resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]Approval, 0, len(resp.Kvs))
	for _, kvp := range resp.Kvs {
		var a Approval
		if err := json.Unmarshal(kvp.Value, &a); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kvp.Key, err)
		}
		// An approval filed under another operator's key would make one
		// operator's slot hold someone else's signature.
		if want := Key(keys, s, a.Operator); want != string(kvp.Key) {
			return nil, fmt.Errorf("approval record %s names operator %q (key %s)", kvp.Key, a.Operator, want)
		}
		out = append(out, a)
	}
	return out, nil
}

// Approve records a as an approval of s: it checks a against operators
// (configured operator, not the requester, signed with that operator's
// key, given before expiry), stores it (one per operator) and appends an
// audit entry {who: a.Operator, action: "approve", target: "kind/id",
// result: "ok"}. A refusal is audited too, with result "refused: <reason>",
// and returned wrapping the sentinel (ErrUnknownOperator, ErrBadSignature,
// ErrSelfApproval, ErrExpired, ErrDuplicate).
//
// a.At is the instant the approval is judged at: callers set it to the
// current time when the operator hands the signature in. It is not
// trusted beyond that; Check enforces expiry against its own clock.
//
// An operator list Check cannot use (repeated names or keys, a key that
// does not parse) or an etcd failure is an error, not a refusal: nothing
// was decided about a, so nothing is audited.
//
// If the audit entry cannot be written, the stored approval is removed
// again, so that no approval counts without its audit record, and the
// error says so.
func Approve(ctx context.Context, kv clientv3.KV, keys store.Keys, log *audit.Log, s Subject, a Approval, operators []config.Operator) error {
	ref, fp, err := judgeOne(s, a, operators)
	if err != nil {
		return fmt.Errorf("approve %s by %q: %w", s.Target(), a.Operator, err)
	}
	if ref == nil {
		err := Put(ctx, kv, keys, s, a)
		switch {
		case errors.Is(err, store.ErrExists):
			ref = fmt.Errorf("%q: %w", a.Operator, ErrDuplicate)
		case err != nil:
			return fmt.Errorf("approve %s by %q: %w", s.Target(), a.Operator, err)
		}
	}
	if ref != nil {
		if _, aerr := log.Append(ctx, entry(s, a, fp, resultRefuse+ref.Error())); aerr != nil {
			return fmt.Errorf("approve %s by %q: refused (%w), and the refusal was not audited: %v", s.Target(), a.Operator, ref, aerr)
		}
		return fmt.Errorf("approve %s by %q: %w", s.Target(), a.Operator, ref)
	}
	if _, aerr := log.Append(ctx, entry(s, a, fp, resultOK)); aerr != nil {
		return fmt.Errorf("approve %s by %q: audit: %w%s", s.Target(), a.Operator, aerr, rollback(ctx, kv, keys, s, a))
	}
	return nil
}

// judgeOne applies Check's rule to the single approval a at a.At. ref is
// the reason for refusing it (nil: it would count); err means nothing was
// decided. fp is the operator's key fingerprint when known, for the audit
// entry.
func judgeOne(s Subject, a Approval, operators []config.Operator) (ref error, fp string, err error) {
	keys, err := operatorKeys(operators)
	if err != nil {
		return nil, "", err
	}
	if key, ok := keys[a.Operator]; ok {
		fp = ssh.FingerprintSHA256(key)
	}
	if err := precheck(s, a); err != nil {
		return err, fp, nil
	}
	v, err := Check(s, []Approval{a}, operators, 1, a.At)
	if len(v.Rejected) > 0 {
		return v.Rejected[0].Err, fp, nil
	}
	if err != nil {
		return nil, fp, err
	}
	return nil, fp, nil
}

// entry builds the audit entry for a. Refused approvals carry whatever
// the submitter sent, so every field is made valid UTF-8 and cut to a
// bounded length: a malformed request must still leave its record.
func entry(s Subject, a Approval, fp, result string) audit.Entry {
	who := a.Operator
	if checkName(who, maxNameLen) != nil {
		who = "(invalid operator name " + strconv.Quote(clean(who)) + ")"
	}
	d := map[string]string{
		"kind":      clean(s.Kind),
		"id":        clean(s.ID),
		"digest":    clean(s.Digest),
		"requester": clean(s.Requester),
		"expires":   s.Expires.UTC().Format(time.RFC3339Nano),
	}
	if fp != "" {
		d["key"] = fp
	}
	return audit.Entry{Who: who, Action: auditAction, Target: clean(s.Target()), Result: clean(result), Detail: d}
}

// maxAuditField bounds each free-text field of an audit entry.
const maxAuditField = 1024

func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxAuditField {
		return s
	}
	s = s[:maxAuditField]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// rollback removes a's stored approval, only if it is still the one just
// written, and returns a note for the caller's error.
func rollback(ctx context.Context, kv clientv3.KV, keys store.Keys, s Subject, a Approval) string {
	key := Key(keys, s, a.Operator)
	a.At = a.At.UTC()
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Sprintf("; approval left at %s: encode: %v", key, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", string(b))).
		Then(clientv3.OpDelete(key)).
		Commit()
	switch {
	case err != nil:
		return fmt.Sprintf("; approval left at %s without audit entry: %v", key, err)
	case !resp.Succeeded:
		return fmt.Sprintf("; approval at %s changed meanwhile, left in place", key)
	}
	return "; approval removed again"
}
