// Package registry is the lab's sample registry database: the pinned schema
// (schema.sql), a bulk loader for synthetic domains, and the few registry
// operations the load drills issue. It is what a real registry's database
// looks like to regdr, minimally: regdr replicates it, reconciles zones
// against it (DelegationCount) and judges data loss by its journal.
//
// Every write goes through the journal: the operation inserts its journal
// row first, in the same transaction as the change, so the journal holds
// exactly the committed changes and a LISTEN on "registry_changed" wakes
// the zone generator once per committed change.
package registry

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Schema is the registry's DDL; Apply runs it.
//
//go:embed schema.sql
var Schema string

// Channel is the NOTIFY channel the journal trigger signals; the payload is
// the new journal id.
const Channel = "registry_changed"

// DelegationCount is the number of delegations the zone built from this
// database must hold: active domains with at least one name server. The
// reconciliation gate compares a generated zone against it (.hk 2004).
const DelegationCount = `SELECT count(*) FROM domains d WHERE d.status='active'
AND EXISTS (SELECT 1 FROM domain_ns n WHERE n.domain_id=d.id)`

// Expected outcomes of registry operations.
var (
	// ErrExists: the domain (or host) is already registered.
	ErrExists = errors.New("already exists")
	// ErrNotFound: no such domain.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a malformed label, host name, TLD or count.
	ErrInvalid = errors.New("invalid argument")
	// ErrInUse: the domain's in-zone hosts serve other domains, so
	// deleting it would strand their delegations (EPP's "object
	// association prohibits operation").
	ErrInUse = errors.New("in use by other domains")
	// ErrCommitUncertain: COMMIT was sent but no answer came back, so
	// the change may or may not be durable. See CommitError.
	ErrCommitUncertain = errors.New("commit outcome unknown")
)

// CommitError reports a COMMIT whose outcome is unknown (the connection
// failed while committing). JournalID is the id the transaction's journal
// row would have if it committed, so a history checker can tell later
// whether the write survived.
type CommitError struct {
	JournalID int64
	Err       error
}

func (e *CommitError) Error() string {
	return fmt.Sprintf("commit of journal id %d: %v: %v", e.JournalID, ErrCommitUncertain, e.Err)
}

// Unwrap makes errors.Is(err, ErrCommitUncertain) true and keeps the cause.
func (e *CommitError) Unwrap() []error { return []error{ErrCommitUncertain, e.Err} }

// DB is what the registry needs from a connection: *pgx.Conn, pgx.Tx and
// pgxpool.Pool all have it. A *pgx.Conn must not be shared by goroutines.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// applyLock serialises concurrent Apply calls: CREATE OR REPLACE FUNCTION
// and GRANT race with themselves ("tuple concurrently updated").
const applyLock = 0x72656764 // "regd"

// Apply creates the schema, its indexes, the journal trigger and the
// registry_app role, or leaves them as they are if present.
func Apply(ctx context.Context, db DB) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("apply registry schema: begin: %w", err)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, applyLock); err != nil {
		return fmt.Errorf("apply registry schema: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("apply registry schema: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("apply registry schema: commit: %w", err)
	}
	return nil
}

// rollback ends tx if it is still open (after Commit it does nothing). It
// runs even when ctx is cancelled, but never waits longer than a few
// seconds on a connection that stopped answering.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx) // the error that made us roll back is already reported
}

// Counts summarises the registry in one snapshot.
type Counts struct {
	Domains     int64
	Delegations int64 // DelegationCount
	Hosts       int64
	DS          int64
	JournalMax  int64 // 0 for an empty journal
}

// Count reads Counts in one statement, so all numbers come from one
// snapshot. (A function cannot share the type's name, hence Count.)
func Count(ctx context.Context, db DB) (Counts, error) {
	var c Counts
	err := db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM domains),
		(`+DelegationCount+`),
		(SELECT count(*) FROM hosts),
		(SELECT count(*) FROM ds_records),
		(SELECT coalesce(max(id), 0) FROM journal)`).Scan(&c.Domains, &c.Delegations, &c.Hosts, &c.DS, &c.JournalMax)
	if err != nil {
		return Counts{}, fmt.Errorf("registry counts: %w", err)
	}
	return c, nil
}
