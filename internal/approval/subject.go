package approval

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kinds of subject regdr asks approval for. Kind is part of what is
// signed, so an approval of one kind never counts for another with the
// same id.
const (
	// KindZoneOverride: publish a zone version a gate blocked.
	KindZoneOverride = "zone-override"
	// KindFailover: execute a failover, switchover or failback plan.
	KindFailover = "failover"
)

// Limits on subject fields: they end up in etcd keys and audit entries.
const (
	maxKindLen = 64
	maxIDLen   = 256
	maxNameLen = 128
)

// Subject is what operators approve.
type Subject struct {
	// Kind is KindZoneOverride, KindFailover or another lower-case word.
	Kind string `json:"kind"`
	// ID names the thing within its kind: a zone and serial, a plan id.
	ID string `json:"id"`
	// Digest is the lower-case hex SHA-256 of the canonical description
	// of what is approved (zone, serial and zone digest; the plan), so an
	// approval covers those exact bytes and nothing regenerated under the
	// same id.
	Digest string `json:"digest"`
	// Requester is the operator who asked; they never count as an
	// approver of their own request.
	Requester string `json:"requester"`
	// Expires ends the approval window: approvals given later, and any
	// use after it, are refused.
	Expires time.Time `json:"expires"`
}

// Approval is one operator's signature over a Subject's Message.
type Approval struct {
	Operator string `json:"operator"`
	// Signature is an armored SSHSIG in Namespace over Subject.Message.
	Signature string `json:"signature"`
	// At is when the approval was given. It is not signed (the operator's
	// clock is not trusted either way); expiry is enforced by Check
	// against the caller's clock.
	At time.Time `json:"at"`
}

// messageHeader names the format below. Changing the format must change
// the header, so that no message of one version is a message of another.
const messageHeader = "regdr approval v1"

// Message is the canonical text an operator signs for s, version 1:
//
//	regdr approval v1
//	kind "zone-override"
//	id "test./2026040101"
//	digest "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//	requester "alice"
//	expires "2026-04-01T12:00:00Z"
//
// One field per line, in this order, each value a Go-quoted string
// (strconv.Quote), expires in RFC 3339 UTC with nanoseconds when present,
// each line ending in "\n". Quoting makes the encoding injective: no
// value can contain a line break or a quote that would let one subject's
// message read as another's, whatever the field contents. It is plain
// text so an operator can read what they sign before running ssh-keygen.
func (s Subject) Message() []byte {
	var b strings.Builder
	b.WriteString(messageHeader + "\n")
	for _, f := range [...]struct{ name, value string }{
		{"kind", s.Kind},
		{"id", s.ID},
		{"digest", s.Digest},
		{"requester", s.Requester},
		{"expires", s.Expires.UTC().Format(time.RFC3339Nano)},
	} {
		b.WriteString(f.name + " " + strconv.Quote(f.value) + "\n")
	}
	return []byte(b.String())
}

// Hash is the lower-case hex SHA-256 of Message: a short name for exactly
// this subject, used in etcd keys.
func (s Subject) Hash() string {
	h := sha256.Sum256(s.Message())
	return hex.EncodeToString(h[:])
}

// Target names the subject in audit entries and errors: "kind/id".
func (s Subject) Target() string { return s.Kind + "/" + s.ID }

// Validate refuses subjects that cannot be approved: missing fields,
// a digest that is not a SHA-256, control characters in names.
func (s Subject) Validate() error {
	var errs []error
	if !validKind(s.Kind) {
		errs = append(errs, fmt.Errorf("kind %q: want lower-case letters, digits and '-', at most %d", s.Kind, maxKindLen))
	}
	if err := checkName(s.ID, maxIDLen); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
	}
	if !validDigest(s.Digest) {
		errs = append(errs, fmt.Errorf("digest %q: want 64 lower-case hex digits (SHA-256)", s.Digest))
	}
	if err := checkName(s.Requester, maxNameLen); err != nil {
		errs = append(errs, fmt.Errorf("requester: %w", err))
	}
	if s.Expires.IsZero() {
		errs = append(errs, errors.New("expires is unset"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("subject %s: %w", s.Target(), err)
	}
	return nil
}

func validKind(k string) bool {
	if k == "" || len(k) > maxKindLen || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for _, c := range k {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func validDigest(d string) bool {
	if len(d) != sha256.Size*2 {
		return false
	}
	for _, c := range d {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkName accepts printable UTF-8 without spaces at either end: names
// appear in keys, audit entries and terminals.
func checkName(s string, max int) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > max:
		return fmt.Errorf("%d bytes, limit %d", len(s), max)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("%q has leading or trailing space", s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains a non-printable character", s)
		}
	}
	return nil
}
