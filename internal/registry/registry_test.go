package registry_test

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/registry"
)

// newRegistry starts a primary and applies the schema to its registry
// database.
func newRegistry(t *testing.T) (*pglab.Cluster, *pgx.Conn) {
	t.Helper()
	c := pglabtest.Primary(t)
	conn := pglabtest.Conn(t, c, "registry")
	if err := registry.Apply(ctxT(t, 30*time.Second), conn); err != nil {
		t.Fatal(err)
	}
	return c, conn
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func scalar[T any](t *testing.T, db registry.DB, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := db.QueryRow(ctxT(t, 30*time.Second), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestApplyIsIdempotent(t *testing.T) {
	_, conn := newRegistry(t)
	ctx := ctxT(t, 30*time.Second)
	if _, err := registry.Register(ctx, conn, "before", []string{"ns1.example.net"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := registry.Apply(ctx, conn); err != nil {
			t.Fatalf("Apply again: %v", err)
		}
	}
	// Re-applying kept the data and did not duplicate the trigger.
	if n := scalar[int64](t, conn, `SELECT count(*) FROM domains WHERE name = 'before'`); n != 1 {
		t.Fatalf("domain rows after re-apply = %d, want 1", n)
	}
	if n := scalar[int64](t, conn, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'journal'::regclass AND NOT tgisinternal`); n != 1 {
		t.Fatalf("journal triggers = %d, want 1", n)
	}
	tables := []string{"registrants", "domains", "hosts", "domain_ns", "ds_records", "journal"}
	for _, tb := range tables {
		if n := scalar[int64](t, conn, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = $1`, tb); n != 1 {
			t.Errorf("table %s missing", tb)
		}
	}
}

func TestPopulate(t *testing.T) {
	_, conn := newRegistry(t)
	ctx := ctxT(t, 60*time.Second)
	const n = 10000
	if err := registry.Populate(ctx, conn, "test.", n); err != nil {
		t.Fatal(err)
	}
	c, err := registry.Count(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if c.Domains != n || c.Delegations != n {
		t.Fatalf("domains %d, delegations %d; want %d each", c.Domains, c.Delegations, n)
	}
	if got := scalar[int64](t, conn, registry.DelegationCount); got != n {
		t.Fatalf("DelegationCount = %d, want %d", got, n)
	}

	checks := []struct {
		name     string
		sql      string
		min, max int64
	}{
		{"domains without exactly 2 NS", `SELECT count(*) FROM domains d
			WHERE (SELECT count(*) FROM domain_ns n WHERE n.domain_id = d.id) <> 2`, 0, 0},
		{"in-zone NS hosts without glue", `SELECT count(*) FROM domain_ns n JOIN hosts h ON h.id = n.host_id
			WHERE h.fqdn LIKE '%.test.' AND cardinality(h.ipv4) + cardinality(h.ipv6) = 0`, 0, 0},
		{"in-zone NS hosts not linked to their domain", `SELECT count(*) FROM domain_ns n JOIN hosts h ON h.id = n.host_id
			JOIN domains d ON d.id = n.domain_id
			WHERE h.fqdn LIKE '%.test.' AND (h.domain_id IS DISTINCT FROM d.id OR h.fqdn NOT LIKE '%.' || d.name || '.test.')`, 0, 0},
		{"out-of-zone hosts with addresses", `SELECT count(*) FROM hosts
			WHERE fqdn NOT LIKE '%.test.' AND (cardinality(ipv4) > 0 OR cardinality(ipv6) > 0 OR domain_id IS NOT NULL)`, 0, 0},
		{"domains with in-zone NS (~10%)", `SELECT count(DISTINCT domain_id) FROM hosts WHERE domain_id IS NOT NULL`, 800, 1200},
		{"in-zone hosts with AAAA (~half)", `SELECT count(*) FROM hosts WHERE cardinality(ipv6) > 0`, 700, 1300},
		{"glue outside documentation ranges", `SELECT count(*) FROM hosts h, LATERAL (
			SELECT a FROM unnest(h.ipv4) a UNION ALL SELECT a FROM unnest(h.ipv6) a) x
			WHERE NOT (x.a << '192.0.2.0/24'::inet OR x.a << '2001:db8::/32'::inet)`, 0, 0},
		{"providers used", `SELECT count(DISTINCT h.fqdn) FROM domain_ns n JOIN hosts h ON h.id = n.host_id
			WHERE h.fqdn LIKE 'ns_.hosting___.net.'`, 380, 400},
		{"signed domains (~30%)", `SELECT count(DISTINCT domain_id) FROM ds_records`, 2700, 3300},
		{"DS not alg 13 / digest type 2 / 64 hex", `SELECT count(*) FROM ds_records
			WHERE algorithm <> 13 OR digest_type <> 2 OR digest !~ '^[0-9a-f]{64}$' OR key_tag NOT BETWEEN 0 AND 65535`, 0, 0},
		{"domains with two DS", `SELECT count(*) FROM (SELECT domain_id FROM ds_records GROUP BY 1 HAVING count(*) > 1) x`, 0, 0},
		// Varied labels: many different first letters pairs, not one prefix.
		{"distinct 2-letter label prefixes", `SELECT count(DISTINCT left(name, 2)) FROM domains`, 25, 1000},
		{"labels that are not LDH", `SELECT count(*) FROM domains WHERE name !~ '^[a-z][a-z0-9]*$' OR length(name) > 63`, 0, 0},
		{"bulk-load journal rows with the count", `SELECT count(*) FROM journal
			WHERE op = 'bulk-load' AND (detail->>'count')::int = 10000 AND (detail->>'inserted')::int = 10000 AND detail->>'tld' = 'test'`, 1, 1},
		{"journal rows", `SELECT count(*) FROM journal`, 1, 1},
	}
	for _, ck := range checks {
		got := scalar[int64](t, conn, ck.sql)
		if got < ck.min || got > ck.max {
			t.Errorf("%s = %d, want %d..%d", ck.name, got, ck.min, ck.max)
		}
	}

	// Running it again adds nothing but its journal row.
	before := digest(t, conn)
	if err := registry.Populate(ctx, conn, "test", n); err != nil {
		t.Fatal(err)
	}
	if after := digest(t, conn); after != before {
		t.Fatal("second Populate changed the data")
	}
	if got := scalar[int64](t, conn, `SELECT count(*) FROM journal WHERE op = 'bulk-load' AND (detail->>'inserted')::int = 0`); got != 1 {
		t.Fatalf("second bulk-load journal row missing (got %d)", got)
	}
}

// digest is a hash of the registry's content by name (not by id), so two
// databases loaded the same way compare equal.
func digest(t *testing.T, db registry.DB) string {
	t.Helper()
	return scalar[string](t, db, `SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line), '')) FROM (
		SELECT d.name || ' ' || d.status || ' ' || coalesce(r.handle, '-') || ' ' ||
			coalesce((SELECT string_agg(h.fqdn || ' ' || h.ipv4::text || ' ' || h.ipv6::text, ',' ORDER BY h.fqdn)
				FROM domain_ns n JOIN hosts h ON h.id = n.host_id WHERE n.domain_id = d.id), '') || ' ' ||
			coalesce((SELECT string_agg(s.key_tag || ' ' || s.algorithm || ' ' || s.digest_type || ' ' || s.digest, ',')
				FROM ds_records s WHERE s.domain_id = d.id), '') AS line
		FROM domains d LEFT JOIN registrants r ON r.id = d.registrant_id) x`)
}

func TestPopulateIsDeterministic(t *testing.T) {
	c, conn := newRegistry(t)
	ctx := ctxT(t, 60*time.Second)
	if _, err := conn.Exec(ctx, `CREATE DATABASE registry2 OWNER regdr`); err != nil {
		t.Fatal(err)
	}
	conn2 := pglabtest.Conn(t, c, "registry2")
	if err := registry.Apply(ctx, conn2); err != nil {
		t.Fatal(err)
	}
	// Different history, same n: one loads 500 at once, the other 200
	// first and then the rest.
	if err := registry.Populate(ctx, conn, "test", 500); err != nil {
		t.Fatal(err)
	}
	if err := registry.Populate(ctx, conn2, "test", 200); err != nil {
		t.Fatal(err)
	}
	if digest(t, conn) == digest(t, conn2) {
		t.Fatal("200 and 500 domains hash the same: the digest proves nothing")
	}
	if err := registry.Populate(ctx, conn2, "test", 500); err != nil {
		t.Fatal(err)
	}
	if a, b := digest(t, conn), digest(t, conn2); a != b {
		t.Fatalf("Populate(500) differs between databases: %s vs %s", a, b)
	}
}

func TestPopulateRejects(t *testing.T) {
	_, conn := newRegistry(t)
	ctx := ctxT(t, 30*time.Second)
	for _, tc := range []struct {
		tld string
		n   int
	}{{"", 10}, {"te_st", 10}, {"-test", 10}, {"test", -1}} {
		if err := registry.Populate(ctx, conn, tc.tld, tc.n); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("Populate(%q, %d) = %v, want ErrInvalid", tc.tld, tc.n, err)
		}
	}
}

func TestOperations(t *testing.T) {
	c, conn := newRegistry(t)
	ctx := ctxT(t, 60*time.Second)
	listener := pglabtest.Conn(t, c, "registry")
	if _, err := listener.Exec(ctx, "LISTEN "+registry.Channel); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name    string
		op      func() (int64, error)
		wantErr error
		check   string // SQL returning true once the step's effect is there
	}{
		{"register", func() (int64, error) {
			return registry.Register(ctx, conn, "Kumo", []string{"NS1.hosting001.net.", "ns2.hosting001.net", "ns1.hosting001.net."})
		}, nil, `SELECT array_agg(h.fqdn ORDER BY h.fqdn) = '{ns1.hosting001.net.,ns2.hosting001.net.}'
			FROM domains d JOIN domain_ns n ON n.domain_id = d.id JOIN hosts h ON h.id = n.host_id WHERE d.name = 'kumo'`},
		{"register again", func() (int64, error) {
			return registry.Register(ctx, conn, "kumo", []string{"ns1.other.net."})
		}, registry.ErrExists, ""},
		{"register bad label", func() (int64, error) {
			return registry.Register(ctx, conn, "ku_mo", []string{"ns1.other.net."})
		}, registry.ErrInvalid, ""},
		{"register bad ns", func() (int64, error) {
			return registry.Register(ctx, conn, "sora", []string{"localhost"})
		}, registry.ErrInvalid, ""},
		{"update ns", func() (int64, error) {
			return registry.UpdateNS(ctx, conn, "kumo", []string{"ns1.hosting002.net."})
		}, nil, `SELECT array_agg(h.fqdn) = '{ns1.hosting002.net.}'
			FROM domains d JOIN domain_ns n ON n.domain_id = d.id JOIN hosts h ON h.id = n.host_id WHERE d.name = 'kumo'`},
		{"update unknown", func() (int64, error) {
			return registry.UpdateNS(ctx, conn, "nothere", []string{"ns1.hosting002.net."})
		}, registry.ErrNotFound, ""},
		{"create glue host", func() (int64, error) {
			return registry.CreateHost(ctx, conn, "ns1.kumo.test.", "kumo",
				[]netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")})
		}, nil, `SELECT ipv4 = '{192.0.2.53}' AND ipv6 = '{2001:db8::53}' AND domain_id = (SELECT id FROM domains WHERE name = 'kumo')
			FROM hosts WHERE fqdn = 'ns1.kumo.test.'`},
		{"glue host outside its domain", func() (int64, error) {
			return registry.CreateHost(ctx, conn, "ns1.other.test.", "kumo", []netip.Addr{netip.MustParseAddr("192.0.2.1")})
		}, registry.ErrInvalid, ""},
		{"in-zone ns", func() (int64, error) {
			return registry.UpdateNS(ctx, conn, "kumo", []string{"ns1.kumo.test.", "ns1.hosting002.net."})
		}, nil, `SELECT count(*) = 2 FROM domain_ns n JOIN domains d ON d.id = n.domain_id WHERE d.name = 'kumo'`},
		{"register user of kumo's host", func() (int64, error) {
			return registry.Register(ctx, conn, "ame", []string{"ns1.kumo.test."})
		}, nil, `SELECT count(*) = 1 FROM domains WHERE name = 'ame'`},
		{"delete host still in use", func() (int64, error) {
			return registry.Delete(ctx, conn, "kumo")
		}, registry.ErrInUse, ""},
		{"delete user", func() (int64, error) { return registry.Delete(ctx, conn, "ame") }, nil,
			`SELECT count(*) = 0 FROM domains WHERE name = 'ame'`},
		{"delete", func() (int64, error) { return registry.Delete(ctx, conn, "kumo") }, nil,
			// The domain's in-zone host and links go with it.
			`SELECT NOT EXISTS (SELECT 1 FROM domains WHERE name = 'kumo')
				AND NOT EXISTS (SELECT 1 FROM hosts WHERE fqdn = 'ns1.kumo.test.')`},
		{"delete again", func() (int64, error) { return registry.Delete(ctx, conn, "kumo") }, registry.ErrNotFound, ""},
	}
	for _, st := range steps {
		rowsBefore := scalar[int64](t, conn, `SELECT count(*) FROM journal`)
		id, err := st.op()
		rowsAfter := scalar[int64](t, conn, `SELECT count(*) FROM journal`)
		if st.wantErr != nil {
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
			}
			if id != 0 || rowsAfter != rowsBefore {
				t.Fatalf("%s: failed operation returned id %d and changed journal rows %d -> %d", st.name, id, rowsBefore, rowsAfter)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if rowsAfter != rowsBefore+1 {
			t.Fatalf("%s: journal rows %d -> %d, want +1", st.name, rowsBefore, rowsAfter)
		}
		if max := scalar[int64](t, conn, `SELECT max(id) FROM journal`); max != id {
			t.Fatalf("%s: returned journal id %d, newest is %d", st.name, id, max)
		}
		if !scalar[bool](t, conn, st.check) {
			t.Fatalf("%s: effect not found: %s", st.name, st.check)
		}
		// The next notification is this commit's: a rolled-back
		// operation before it never notified.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: no notification: %v", st.name, err)
		}
		if n.Channel != registry.Channel || n.Payload != strconv.FormatInt(id, 10) {
			t.Fatalf("%s: notification %s %q, want %s %q", st.name, n.Channel, n.Payload, registry.Channel, strconv.FormatInt(id, 10))
		}
	}
	ops := scalar[string](t, conn, `SELECT string_agg(op || ':' || domain, ' ' ORDER BY id) FROM journal`)
	want := "register:kumo update-ns:kumo host-create:kumo update-ns:kumo register:ame delete:ame delete:kumo"
	if ops != want {
		t.Fatalf("journal = %q\nwant      %q", ops, want)
	}
}

func TestJournalIsAppendOnlyForRegistryApp(t *testing.T) {
	_, conn := newRegistry(t)
	ctx := ctxT(t, 30*time.Second)
	asApp := func(t *testing.T, f func(tx pgx.Tx) error) error {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE registry_app`); err != nil {
			t.Fatal(err)
		}
		if err := f(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	// registry_app can do every registry operation (the nested Begin of
	// a pgx.Tx is a savepoint, so the role stays in force).
	err := asApp(t, func(tx pgx.Tx) error {
		if _, err := registry.Register(ctx, tx, "kumo", []string{"ns1.hosting001.net."}); err != nil {
			return err
		}
		if _, err := registry.CreateHost(ctx, tx, "ns1.kumo.test.", "kumo", []netip.Addr{netip.MustParseAddr("192.0.2.1")}); err != nil {
			return err
		}
		if _, err := registry.UpdateNS(ctx, tx, "kumo", []string{"ns1.kumo.test."}); err != nil {
			return err
		}
		_, err := registry.Delete(ctx, tx, "kumo")
		return err
	})
	if err != nil {
		t.Fatalf("registry operations as registry_app: %v", err)
	}
	if n := scalar[int64](t, conn, `SELECT count(*) FROM journal`); n != 4 {
		t.Fatalf("journal rows = %d, want 4", n)
	}
	for _, stmt := range []string{
		`UPDATE journal SET op = 'rewritten'`,
		`DELETE FROM journal`,
		`TRUNCATE journal`,
	} {
		err := asApp(t, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, stmt); return err })
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as registry_app: err = %v, want SQLSTATE 42501 insufficient_privilege", stmt, err)
		}
	}
	if n := scalar[int64](t, conn, `SELECT count(*) FROM journal WHERE op <> 'rewritten'`); n != 4 {
		t.Fatalf("journal rows after refused rewrites = %d, want 4", n)
	}
}

// killingTx has its backend terminated (and waits until it is gone) just
// before COMMIT, so the COMMIT gets no answer.
type killingTx struct {
	pgx.Tx
	killer *pgx.Conn
	pid    uint32
}

func (k killingTx) Commit(ctx context.Context) error {
	if _, err := k.killer.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, k.pid); err != nil {
		return err
	}
	return k.Tx.Commit(ctx)
}

type killingDB struct {
	*pgx.Conn
	killer *pgx.Conn
}

func (k killingDB) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := k.Conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return killingTx{Tx: tx, killer: k.killer, pid: k.Conn.PgConn().PID()}, nil
}

func TestLostCommitIsUncertain(t *testing.T) {
	c, conn := newRegistry(t)
	ctx := ctxT(t, 30*time.Second)
	victim := pglabtest.Conn(t, c, "registry")
	id, err := registry.Register(ctx, killingDB{Conn: victim, killer: conn}, "kumo", []string{"ns1.hosting001.net."})
	if id != 0 {
		t.Fatalf("returned journal id %d for a commit that got no answer", id)
	}
	var ce *registry.CommitError
	if !errors.Is(err, registry.ErrCommitUncertain) || !errors.As(err, &ce) || ce.JournalID == 0 {
		t.Fatalf("err = %v, want a CommitError with the journal id", err)
	}
	// Here the backend died before COMMIT, so the write is not there;
	// the checker learns that from the journal id.
	if n := scalar[int64](t, conn, `SELECT count(*) FROM journal WHERE id = $1`, ce.JournalID); n != 0 {
		t.Fatalf("journal id %d present after the backend was killed before COMMIT", ce.JournalID)
	}
}
