package registry

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Register creates domain label (active, no registrant) delegated to the
// name servers ns (absolute or relative host names; a trailing dot is
// added). Name servers not yet known are created as external hosts without
// addresses: the registry does not store its TLD, so it cannot tell an
// in-zone name from an external one. An in-zone name server with glue is
// made with CreateHost and then named in UpdateNS. The journal id is
// returned only once the transaction has committed.
func Register(ctx context.Context, db DB, label string, ns []string) (int64, error) {
	label, hosts, err := normalise(label, ns)
	if err != nil {
		return 0, fmt.Errorf("register %s: %w", label, err)
	}
	return write(ctx, db, "register", label, map[string]any{"ns": hosts}, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO domains (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id`, label).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		return setNS(ctx, tx, id, hosts)
	})
}

// UpdateNS replaces the name servers of domain label with ns (which may be
// empty: the domain then stays registered but is no longer delegated).
func UpdateNS(ctx context.Context, db DB, label string, ns []string) (int64, error) {
	label, hosts, err := normalise(label, ns)
	if err != nil {
		return 0, fmt.Errorf("update name servers of %s: %w", label, err)
	}
	return write(ctx, db, "update-ns", label, map[string]any{"ns": hosts}, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `UPDATE domains SET updated_at = now() WHERE name = $1 RETURNING id`, label).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM domain_ns WHERE domain_id = $1`, id); err != nil {
			return err
		}
		return setNS(ctx, tx, id, hosts)
	})
}

// Delete removes domain label with its name server links, DS records and
// in-zone hosts. It fails with ErrInUse while one of those hosts serves
// another domain.
func Delete(ctx context.Context, db DB, label string) (int64, error) {
	label, _, err := normalise(label, nil)
	if err != nil {
		return 0, fmt.Errorf("delete %s: %w", label, err)
	}
	return write(ctx, db, "delete", label, nil, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM domains WHERE name = $1`, label)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation
				return fmt.Errorf("%w: %s", ErrInUse, pgErr.Detail)
			}
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// CreateHost creates the in-zone (glue) host fqdn, subordinate to the
// registered domain label, with addresses addrs (at least one).
func CreateHost(ctx context.Context, db DB, fqdn, label string, addrs []netip.Addr) (int64, error) {
	label, hosts, err := normalise(label, []string{fqdn})
	if err != nil {
		return 0, fmt.Errorf("create host %s: %w", fqdn, err)
	}
	fqdn = hosts[0]
	if i := strings.Index(fqdn, "."+label+"."); i <= 0 {
		return 0, fmt.Errorf("create host %s: %w: not a name below domain %s", fqdn, ErrInvalid, label)
	}
	if len(addrs) == 0 {
		return 0, fmt.Errorf("create host %s: %w: an in-zone host needs at least one address for its glue", fqdn, ErrInvalid)
	}
	// Empty, not nil: a nil slice would be NULL, and the columns are NOT NULL.
	v4, v6 := []netip.Addr{}, []netip.Addr{}
	var shown []string
	for _, a := range addrs {
		if !a.IsValid() {
			return 0, fmt.Errorf("create host %s: %w: invalid address", fqdn, ErrInvalid)
		}
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
		shown = append(shown, a.String())
	}
	detail := map[string]any{"host": fqdn, "addrs": shown}
	return write(ctx, db, "host-create", label, detail, func(tx pgx.Tx) error {
		var domainID int64
		err := tx.QueryRow(ctx, `SELECT id FROM domains WHERE name = $1`, label).Scan(&domainID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO hosts (fqdn, domain_id, ipv4, ipv6) VALUES ($1, $2, $3, $4)
			ON CONFLICT (fqdn) DO NOTHING`, fqdn, domainID, v4, v6)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrExists
		}
		return nil
	})
}

// setNS links domain id to the hosts named, creating unknown ones as
// external hosts.
func setNS(ctx context.Context, tx pgx.Tx, id int64, hosts []string) error {
	if len(hosts) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO hosts (fqdn) SELECT unnest($1::text[]) ON CONFLICT (fqdn) DO NOTHING`, hosts); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO domain_ns (domain_id, host_id) SELECT $1, id FROM hosts WHERE fqdn = ANY($2)`, id, hosts)
	return err
}

// write runs one registry operation as one transaction: the journal row
// first, then change, then COMMIT. The journal id is returned only after
// the COMMIT succeeded. A failure the server answered (change's sentinel,
// a constraint) means nothing was written; a COMMIT that got no answer is
// a *CommitError.
func write(ctx context.Context, db DB, op, label string, detail map[string]any, change func(pgx.Tx) error) (int64, error) {
	what := op + " " + label
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: begin: %w", what, err)
	}
	defer rollback(ctx, tx)
	var jid int64
	if err := tx.QueryRow(ctx, `INSERT INTO journal (op, domain, detail) VALUES ($1, $2, $3) RETURNING id`,
		op, label, detail).Scan(&jid); err != nil {
		return 0, fmt.Errorf("%s: journal: %w", what, err)
	}
	if err := change(tx); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(ctx); err != nil {
		// An ERROR is the server's answer to this COMMIT: rolled back.
		// Anything else (a broken connection, or a FATAL that ended the
		// session, perhaps while it committed) leaves the outcome open.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Severity == "ERROR" {
			return 0, fmt.Errorf("%s: commit refused: %w", what, err)
		}
		return 0, fmt.Errorf("%s: %w", what, &CommitError{JournalID: jid, Err: err})
	}
	return jid, nil
}

// normalise lower-cases label and host names, checks them, makes host
// names absolute and drops duplicates (keeping the given order).
func normalise(label string, ns []string) (string, []string, error) {
	label = strings.ToLower(strings.TrimSpace(label))
	if !ldhLabel(label) {
		return label, nil, fmt.Errorf("%w: domain label %q: want 1-63 letters, digits and inner hyphens", ErrInvalid, label)
	}
	hosts := []string{} // JSON [] in the journal, not null
	seen := map[string]bool{}
	for _, h := range ns {
		h = strings.ToLower(strings.TrimSpace(h))
		if !strings.HasSuffix(h, ".") {
			h += "."
		}
		if err := checkHostName(h); err != nil {
			return label, nil, err
		}
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return label, hosts, nil
}

func checkHostName(fqdn string) error {
	if len(fqdn) > 254 {
		return fmt.Errorf("%w: host name %q longer than 253 characters", ErrInvalid, fqdn)
	}
	labels := strings.Split(strings.TrimSuffix(fqdn, "."), ".")
	if len(labels) < 2 {
		return fmt.Errorf("%w: host name %q: want at least two labels", ErrInvalid, fqdn)
	}
	for _, l := range labels {
		if !ldhLabel(l) {
			return fmt.Errorf("%w: host name %q: label %q is not letters, digits and inner hyphens", ErrInvalid, fqdn, l)
		}
	}
	return nil
}

// ldhLabel is the host name rule (RFC 952/1123) for one lower-case label.
func ldhLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range []byte(l) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
