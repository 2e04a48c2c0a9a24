package zonegen

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"
)

// TxBeginner is what ReadSnapshot needs from the database: *pgx.Conn,
// pgxpool.Pool and pgx.Tx all have it. It is called once per snapshot.
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// The pinned schema's queries (docs: /work/briefs/schema.md and
// internal/registry/schema.sql). A delegation is an 'active' domain with at
// least one domain_ns row.
const (
	journalMaxQuery = `SELECT coalesce(max(id), 0) FROM journal`

	delegationCountQuery = `SELECT count(*) FROM domains d WHERE d.status = 'active'
		AND EXISTS (SELECT 1 FROM domain_ns n WHERE n.domain_id = d.id)`

	nsQuery = `SELECT d.name, h.fqdn
		FROM domains d
		JOIN domain_ns n ON n.domain_id = d.id
		JOIN hosts h ON h.id = n.host_id
		WHERE d.status = 'active'
		ORDER BY d.name, h.fqdn`

	dsQuery = `SELECT d.name, r.key_tag, r.algorithm, r.digest_type, r.digest
		FROM ds_records r
		JOIN domains d ON d.id = r.domain_id
		WHERE d.status = 'active'
		  AND EXISTS (SELECT 1 FROM domain_ns n WHERE n.domain_id = d.id)
		ORDER BY d.name, r.id`

	// Addresses of every host some active domain uses; ReadSnapshot keeps
	// the in-zone ones (a suffix test on names is clearer in Go than in
	// LIKE, where "_" is a wildcard).
	glueQuery = `SELECT h.fqdn, h.ipv4, h.ipv6
		FROM hosts h
		WHERE EXISTS (SELECT 1 FROM domain_ns n JOIN domains d ON d.id = n.domain_id
		              WHERE n.host_id = h.id AND d.status = 'active')
		ORDER BY h.fqdn`
)

// ErrReconcile means the snapshot's delegations do not add up to the
// registry's own count of them; the zone must not be published.
var ErrReconcile = errors.New("delegation count does not reconcile")

// ReadSnapshot reads the delegations of origin's registry in ONE
// repeatable-read, read-only transaction, so every row comes from the same
// instant: the .hk 2004 zone was built from a database half-way through an
// update. Inside that transaction it also runs the registry's delegation
// count and fails with ErrReconcile if the rows read do not add up to it.
//
// origin is the TLD ("test."); domains.name holds labels under it.
func ReadSnapshot(ctx context.Context, db TxBeginner, origin string) (s Snapshot, err error) {
	if !dns.IsFqdn(origin) {
		return Snapshot{}, fmt.Errorf("read registry snapshot: origin %q has no trailing dot", origin)
	}
	origin = dns.CanonicalName(origin)
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: begin: %w", err)
	}
	// Read-only: rolling back is the whole cleanup (a no-op after Commit).
	// It must run even if ctx is done, but not wait forever.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		tx.Rollback(rctx)
	}()

	if err := tx.QueryRow(ctx, journalMaxQuery).Scan(&s.JournalID); err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: journal: %w", err)
	}
	var want int64
	if err := tx.QueryRow(ctx, delegationCountQuery).Scan(&want); err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: delegation count: %w", err)
	}

	byName := map[string]int{} // domain name -> index in s.Delegations
	rows, err := tx.Query(ctx, nsQuery)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: name servers: %w", err)
	}
	var name, fqdn string
	_, err = pgx.ForEachRow(rows, []any{&name, &fqdn}, func() error {
		i, ok := byName[name]
		if !ok {
			i = len(s.Delegations)
			byName[name] = i
			s.Delegations = append(s.Delegations, Delegation{Label: name})
		}
		s.Delegations[i].NS = append(s.Delegations[i].NS, fqdn)
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: name servers: %w", err)
	}
	if int64(len(s.Delegations)) != want {
		return Snapshot{}, fmt.Errorf("read registry snapshot: %w: %d domains with name servers read, registry counts %d",
			ErrReconcile, len(s.Delegations), want)
	}

	rows, err = tx.Query(ctx, dsQuery)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: DS records: %w", err)
	}
	var tag int32
	var alg, digestType int16
	var digest string
	_, err = pgx.ForEachRow(rows, []any{&name, &tag, &alg, &digestType, &digest}, func() error {
		i, ok := byName[name]
		if !ok {
			return fmt.Errorf("DS for %s, which has no name servers", name)
		}
		if tag < 0 || tag > 65535 || alg < 0 || alg > 255 || digestType < 0 || digestType > 255 {
			return fmt.Errorf("DS of %s: key tag %d, algorithm %d or digest type %d out of range", name, tag, alg, digestType)
		}
		s.Delegations[i].DS = append(s.Delegations[i].DS, DS{
			KeyTag: uint16(tag), Algorithm: uint8(alg), DigestType: uint8(digestType), Digest: digest,
		})
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: DS records: %w", err)
	}

	s.Glue = map[string][]netip.Addr{}
	rows, err = tx.Query(ctx, glueQuery)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: glue: %w", err)
	}
	var v4, v6 []netip.Prefix
	_, err = pgx.ForEachRow(rows, []any{&fqdn, &v4, &v6}, func() error {
		host := strings.ToLower(fqdn)
		if !inZone(host, origin) {
			return nil
		}
		for _, p := range append(v4, v6...) {
			// inet also holds networks; a /24 is not a host address.
			if p.Bits() != p.Addr().BitLen() {
				return fmt.Errorf("host %s: address %s is a network, not a host address", fqdn, p)
			}
			s.Glue[host] = append(s.Glue[host], p.Addr())
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: glue: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Snapshot{}, fmt.Errorf("read registry snapshot: end transaction: %w", err)
	}
	return s, nil
}
