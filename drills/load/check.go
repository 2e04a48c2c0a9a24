package load

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier is the part of a pgx connection or pool Check needs.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Verdict compares a load history with the registry journal.
type Verdict struct {
	// Acked and Present count the run's acknowledged writes and its
	// journal rows in the database.
	Acked, Present int
	// Lost are acknowledged journal ids the database does not have: data
	// loss. Must be empty after a zero-loss switchover.
	Lost []int64
	// Unexpected are journal rows of this run's domains that were neither
	// acknowledged nor uncertain: writes nobody was told about.
	Unexpected []int64
	// UncertainKept and UncertainGone split the uncertain writes by
	// whether they turned out to be committed.
	UncertainKept, UncertainGone []int64
}

// OK reports no loss and no unexpected writes.
func (v Verdict) OK() bool { return len(v.Lost) == 0 && len(v.Unexpected) == 0 }

// Check reads the registry journal rows of the run with this prefix (from
// the database the clients now write to; never decide from a standby) and
// compares them with the run's records in recs (records of other runs are
// ignored).
func Check(ctx context.Context, q Querier, prefix string, recs []Record) (Verdict, error) {
	rows, err := q.Query(ctx, `SELECT id FROM journal
		WHERE left(domain, length($1) + 1) = $1 || '-' AND op IN ($2, $3, $4)`,
		prefix, OpRegister, OpUpdate, OpDelete)
	if err != nil {
		return Verdict{}, fmt.Errorf("check load %s: read registry journal: %w", prefix, err)
	}
	present := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return Verdict{}, fmt.Errorf("check load %s: %w", prefix, err)
		}
		present[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Verdict{}, fmt.Errorf("check load %s: read registry journal: %w", prefix, err)
	}

	v := Verdict{Present: len(present)}
	known := map[int64]bool{}
	for _, r := range recs {
		// A journal file may hold several runs.
		if !strings.HasPrefix(r.Domain, prefix+"-") {
			continue
		}
		known[r.ID] = true
		switch {
		case r.Acked():
			v.Acked++
			if !present[r.ID] {
				v.Lost = append(v.Lost, r.ID)
			}
		case r.Uncertain && present[r.ID]:
			v.UncertainKept = append(v.UncertainKept, r.ID)
		case r.Uncertain:
			v.UncertainGone = append(v.UncertainGone, r.ID)
		}
	}
	for id := range present {
		if !known[id] {
			v.Unexpected = append(v.Unexpected, id)
		}
	}
	slices.Sort(v.Unexpected)
	return v, nil
}
