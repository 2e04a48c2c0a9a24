package backup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/registry"
)

// registryDB is the registry's database name in a restored cluster.
const registryDB = "registry"

// fkChecks find rows whose references dangle. The schema declares these
// foreign keys, so in a healthy database each finds nothing; a restore
// that lost pages of one table but not of another finds rows.
var fkChecks = []struct{ name, sql string }{
	{"domains.registrant_id", `SELECT count(*) FROM domains d WHERE d.registrant_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM registrants r WHERE r.id = d.registrant_id)`},
	{"hosts.domain_id", `SELECT count(*) FROM hosts h WHERE h.domain_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM domains d WHERE d.id = h.domain_id)`},
	{"domain_ns.domain_id", `SELECT count(*) FROM domain_ns n WHERE NOT EXISTS (SELECT 1 FROM domains d WHERE d.id = n.domain_id)`},
	{"domain_ns.host_id", `SELECT count(*) FROM domain_ns n WHERE NOT EXISTS (SELECT 1 FROM hosts h WHERE h.id = n.host_id)`},
	{"ds_records.domain_id", `SELECT count(*) FROM ds_records r WHERE NOT EXISTS (SELECT 1 FROM domains d WHERE d.id = r.domain_id)`},
}

// semantic checks the restored registry against what the catalog
// recorded at backup time (RIPE 2012's backups "existed" until someone
// looked inside): row counts within tolerance, every journal row the
// catalog counted up to its highest id, no dangling references, and the
// configured assertions. Every problem is reported, not just the first.
func (r *run) semantic(ctx context.Context) (string, error) {
	c, err := pgx.Connect(ctx, r.sc.connString(registryDB))
	if err != nil {
		return "", fmt.Errorf("connect to restored registry: %w", err)
	}
	defer closeConn(ctx, c)
	var probs []string
	got, err := registry.Count(ctx, c)
	if err != nil {
		return "", err
	}
	f := r.o.Backup.Facts
	tol := r.o.RowTolerancePercent
	for _, n := range []struct {
		what      string
		got, want int64
	}{
		{"domains", got.Domains, f.Domains},
		{"delegations", got.Delegations, f.Delegations},
		{"hosts", got.Hosts, f.Hosts},
		{"DS records", got.DS, f.DS},
	} {
		if !within(n.got, n.want, tol) {
			probs = append(probs, fmt.Sprintf("%s: restored %d, catalog recorded %d at backup time (tolerance %g%%)", n.what, n.got, n.want, tol))
		}
	}

	var count, lo, hi int64
	if err := c.QueryRow(ctx, `SELECT count(*), coalesce(min(id), 0), coalesce(max(id), 0) FROM journal`).Scan(&count, &lo, &hi); err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	// Holes in the ids are normal (a failed registry write rolls back
	// after taking its id); lost rows are not: every row the catalog saw
	// up to its highest id must be back, and the journal must reach it.
	holes := int64(0)
	if count > 0 {
		holes = hi - lo + 1 - count
	}
	if f.MaxJournalID > 0 {
		var upTo int64
		if err := c.QueryRow(ctx, `SELECT count(*) FROM journal WHERE id <= $1`, f.MaxJournalID).Scan(&upTo); err != nil {
			return "", fmt.Errorf("journal: %w", err)
		}
		if hi < f.MaxJournalID {
			probs = append(probs, fmt.Sprintf("journal ends at id %d, but id %d existed when the backup was taken", hi, f.MaxJournalID))
		} else if upTo < f.JournalRows {
			first, err := journalHoles(ctx, c, lo, f.MaxJournalID)
			if err != nil {
				return "", err
			}
			msg := fmt.Sprintf("journal has %d rows with ids up to %d, the catalog recorded %d: %d rows lost",
				upTo, f.MaxJournalID, f.JournalRows, f.JournalRows-upTo)
			if len(first) > 0 {
				msg += fmt.Sprintf(" (ids without a row include %v)", first)
			}
			probs = append(probs, msg)
		}
	}
	for _, fk := range fkChecks {
		var n int64
		if err := c.QueryRow(ctx, fk.sql).Scan(&n); err != nil {
			return "", fmt.Errorf("foreign key %s: %w", fk.name, err)
		}
		if n != 0 {
			probs = append(probs, fmt.Sprintf("%s: %d rows reference nothing", fk.name, n))
		}
	}
	for _, a := range r.o.Assertions {
		if err := assert(ctx, c, a); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if len(probs) > 0 {
		return "", errors.New(strings.Join(probs, "; "))
	}
	return fmt.Sprintf("%d domains, %d delegations, journal ids %d-%d with every catalogued row (%d holes from rolled-back writes), foreign keys hold, %d assertions pass",
		got.Domains, got.Delegations, lo, hi, holes, len(r.o.Assertions)), nil
}

// journalHoles lists up to five ids in [lo, hi] with no journal row.
func journalHoles(ctx context.Context, c *pgx.Conn, lo, hi int64) ([]int64, error) {
	rows, err := c.Query(ctx, `SELECT g FROM generate_series($1::bigint, $2::bigint) g WHERE NOT EXISTS (SELECT 1 FROM journal j WHERE j.id = g) LIMIT 5`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("journal holes: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("journal holes: %w", err)
	}
	return ids, nil
}

// within: got is within pct percent of want.
func within(got, want int64, pct float64) bool {
	return math.Abs(float64(got-want)) <= float64(want)*pct/100
}

func assert(ctx context.Context, c *pgx.Conn, a config.BackupAssertion) error {
	op, num, want, err := config.ParseExpect(a.Expect)
	if err != nil {
		return fmt.Errorf("assertion %s: %w", a.Name, err)
	}
	var val any
	if err := c.QueryRow(ctx, a.SQL).Scan(&val); err != nil {
		return fmt.Errorf("assertion %s: %w", a.Name, err)
	}
	text := fmt.Sprint(val)
	if op == "" {
		if text != want {
			return fmt.Errorf("assertion %s: got %q, want %q", a.Name, text, want)
		}
		return nil
	}
	got, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return fmt.Errorf("assertion %s: value %q is not a number (expect %q)", a.Name, text, a.Expect)
	}
	ok := map[string]bool{
		">=": got >= num, "<=": got <= num, ">": got > num, "<": got < num, "=": got == num, "!=": got != num,
	}[op]
	if !ok {
		return fmt.Errorf("assertion %s: got %s, want %s", a.Name, text, a.Expect)
	}
	return nil
}
