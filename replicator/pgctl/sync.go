package pgctl

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// SyncSetting is the synchronous_standby_names value that makes the first
// streaming standby of names synchronous ("" for none).
func SyncSetting(names []string) string {
	if len(names) == 0 {
		return ""
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
	}
	return fmt.Sprintf("FIRST 1 (%s)", strings.Join(q, ", "))
}

// SetSynchronous makes commits on the primary behind conn wait until the
// first streaming standby of names (application_name, i.e. the site name)
// has flushed them; no names makes replication asynchronous. The setting
// is persisted with ALTER SYSTEM and is in effect for new sessions when
// SetSynchronous returns. Idempotent.
//
// While it is on and no named standby is connected, every commit waits:
// that is the price of zero loss on a disaster failover. Degrader is the
// rule that trades it back for availability.
func SetSynchronous(ctx context.Context, conn *pgx.Conn, names []string) error {
	srv := where(conn)
	val := SyncSetting(names)
	// ALTER SYSTEM takes no parameters: quote the literal.
	lit := "'" + strings.ReplaceAll(val, "'", "''") + "'"
	if _, err := conn.Exec(ctx, `ALTER SYSTEM SET synchronous_standby_names = `+lit); err != nil {
		return fmt.Errorf("set synchronous standbys %q on %s: %w", val, srv, err)
	}
	if err := reloadUntil(ctx, conn, "synchronous_standby_names", val); err != nil {
		return fmt.Errorf("set synchronous standbys %q on %s: %w", val, srv, err)
	}
	return nil
}

// SyncAction is what Degrader did.
type SyncAction string

const (
	SyncKeep    SyncAction = "none"
	SyncDegrade SyncAction = "degrade" // cleared synchronous_standby_names
	SyncRestore SyncAction = "restore" // set it back to Want
)

// SyncDecision is one Degrader check: what it saw and what it did.
type SyncDecision struct {
	Action SyncAction `json:"action"`
	// Reason says why, for the log and `regdr status`.
	Reason string `json:"reason"`
	// Setting is synchronous_standby_names as found (before the action).
	Setting string `json:"setting"`
	// Streaming are the wanted standbys in state streaming.
	Streaming []string `json:"streaming"`
	// MissingFor is how long no wanted standby has been streaming, as
	// far as this Degrader has seen (zero while one streams).
	MissingFor time.Duration `json:"missing_for"`
}

// Degrader applies regdr's rule for synchronous replication, on the
// primary, each time Check is called (the agent calls it every few
// seconds):
//
//   - Degrade: when synchronous replication is on and none of the Want
//     standbys has been streaming for at least After (as observed by
//     consecutive checks), clear synchronous_standby_names. Commits that
//     were waiting for the standby complete; from then on a disaster
//     failover may lose what the standby had not received.
//   - Restore: when it is off and a Want standby is streaming again
//     (state "streaming", i.e. caught up, not "catchup"), set it back.
//   - Otherwise leave it.
//
// The clock starts at the first check that sees no standby, so a restarted
// agent waits After again before degrading: it errs toward keeping commits
// safe. Not safe for concurrent use.
type Degrader struct {
	Want  []string
	After time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	missingSince time.Time
}

// Check observes the primary behind conn and applies the rule.
func (d *Degrader) Check(ctx context.Context, conn *pgx.Conn) (SyncDecision, error) {
	srv := where(conn)
	var setting string
	var streaming []string
	err := conn.QueryRow(ctx, `SELECT current_setting('synchronous_standby_names'),
		coalesce(array_agg(application_name ORDER BY application_name)
			FILTER (WHERE state = 'streaming'), '{}')
		FROM pg_stat_replication`).Scan(&setting, &streaming)
	if err != nil {
		return SyncDecision{}, fmt.Errorf("check synchronous replication on %s: %w", srv, err)
	}
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	dec, since := decideSync(d.Want, d.After, setting, streaming, d.missingSince, now)
	d.missingSince = since
	switch dec.Action {
	case SyncDegrade:
		err = SetSynchronous(ctx, conn, nil)
	case SyncRestore:
		err = SetSynchronous(ctx, conn, d.Want)
	}
	if err != nil {
		return dec, fmt.Errorf("%s synchronous replication: %w", dec.Action, err)
	}
	return dec, nil
}

// decideSync is the Degrader rule as a pure function: the decision and
// the new "missing since" instant (zero while a wanted standby streams).
func decideSync(want []string, after time.Duration, setting string, streaming []string, missingSince, now time.Time) (SyncDecision, time.Time) {
	dec := SyncDecision{Action: SyncKeep, Setting: setting}
	for _, s := range streaming {
		if slices.Contains(want, s) {
			dec.Streaming = append(dec.Streaming, s)
		}
	}
	on := strings.TrimSpace(setting) != ""
	switch {
	case len(want) == 0:
		dec.Reason = "no standby is configured as synchronous"
		return dec, time.Time{}
	case len(dec.Streaming) > 0 && on:
		dec.Reason = fmt.Sprintf("synchronous: %s streaming", strings.Join(dec.Streaming, ", "))
		return dec, time.Time{}
	case len(dec.Streaming) > 0:
		dec.Action = SyncRestore
		dec.Reason = fmt.Sprintf("%s streaming again: restoring synchronous replication", strings.Join(dec.Streaming, ", "))
		return dec, time.Time{}
	}
	if missingSince.IsZero() || missingSince.After(now) {
		missingSince = now
	}
	dec.MissingFor = now.Sub(missingSince)
	switch {
	case !on:
		dec.Reason = fmt.Sprintf("asynchronous (degraded): no standby of %s streaming for %s", strings.Join(want, ", "), dec.MissingFor.Round(time.Millisecond))
	case dec.MissingFor >= after:
		dec.Action = SyncDegrade
		dec.Reason = fmt.Sprintf("no standby of %s streaming for %s (limit %s): degrading to asynchronous", strings.Join(want, ", "), dec.MissingFor.Round(time.Millisecond), after)
	default:
		dec.Reason = fmt.Sprintf("no standby of %s streaming for %s; degrading after %s", strings.Join(want, ", "), dec.MissingFor.Round(time.Millisecond), after)
	}
	return dec, missingSince
}
