package registry

import (
	"context"
	"fmt"
	"strings"
)

// Shape of the synthetic registry. The proportions follow what a ccTLD
// looks like from its zone: most domains are hosted at a few hundred DNS
// providers, a minority run their own name servers inside the TLD (and so
// need glue), and a third are signed.
const (
	// Providers is how many shared out-of-zone DNS providers
	// (ns1/ns2.hostingNNN.<net>.) the bulk-loaded domains point at.
	Providers = 200
	// InZonePercent of domains use ns1/ns2.<label>.<tld>. with glue.
	InZonePercent = 10
	// SignedPercent of domains have one DS record.
	SignedPercent = 30
	// Registrants is how many synthetic registrants the domains share.
	Registrants = 1000
)

// syllables make labels that look like names and sort like real ones,
// instead of one prefix and a counter.
var syllables = []string{
	"a", "ka", "ki", "ku", "ke", "ko", "sa", "shi", "su", "se", "so", "ta", "chi", "tsu", "te", "to",
	"na", "ni", "no", "ha", "hi", "fu", "ho", "ma", "mi", "mu", "mo", "ya", "yu", "yo", "ra", "ri",
}

// Populate bulk-loads n synthetic domains under tld in one transaction,
// with set-based SQL so that a million domains take seconds, not hours.
// Domain i (1..n) is a function of i alone, so the data is the same for
// the same n, and Populate(n) is a prefix of Populate(n+k). Labels are two
// or three syllables chosen by a hash followed by i (letters then digits,
// so they are unique and never contain a hyphen, unlike the load
// generator's). Each domain gets two name servers: InZonePercent use
// in-zone hosts with glue from 192.0.2.0/24 (some also 2001:db8::/32; data
// only, never contacted), the others a pair at one of Providers shared
// providers; SignedPercent get one DS (algorithm 13, digest type 2).
// Domains already present are left alone, so running it again adds only
// what is missing; a label registered concurrently makes it fail with
// nothing written. One journal row "bulk-load" records the count.
func Populate(ctx context.Context, db DB, tld string, n int) error {
	tld, err := normaliseTLD(tld)
	if err != nil {
		return fmt.Errorf("populate: %w", err)
	}
	if n < 0 {
		return fmt.Errorf("populate %s: %w: count %d", tld, ErrInvalid, n)
	}
	// The providers' domain must be outside the TLD, or their names
	// would need glue too.
	providerTLD := "net"
	if tld == "net" || strings.HasSuffix(tld, ".net") {
		providerTLD = "com"
	}

	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("populate %s: begin: %w", tld, err)
	}
	defer rollback(ctx, tx)

	quoted := make([]string, len(syllables))
	for i, s := range syllables {
		quoted[i] = "'" + s + "'"
	}
	// Per-domain choices come from hashint8extended(i, seed): PostgreSQL's
	// own 64-bit integer hash, fast and stable across versions (hash
	// partitioning depends on it). Seed 1 picks the label's syllables, 2
	// the registrant and provider, 3 in-zone and signed, 4 the glue.
	steps := []struct {
		what string
		sql  string
		args []any
	}{
		{"source rows", fmt.Sprintf(`CREATE TEMP TABLE populate_src ON COMMIT DROP AS
			SELECT i,
				s[1 + (a & 31)] || s[1 + ((a >> 5) & 31)] ||
					CASE WHEN (a >> 10) & 1 = 0 THEN s[1 + ((a >> 11) & 31)] ELSE '' END || i AS label,
				1 + (b & 1048575) %% %[1]d AS registrant,
				1 + ((b >> 20) & 1048575) %% %[2]d AS provider,
				(c & 1048575) %% 100 < %[3]d AS inzone,
				((c >> 20) & 1048575) %% 100 < %[4]d AS signed,
				g AS glue
			FROM generate_series(1, %[5]d::bigint) AS i,
				LATERAL (SELECT hashint8extended(i, 1) AS a, hashint8extended(i, 2) AS b,
					hashint8extended(i, 3) AS c, hashint8extended(i, 4) AS g) AS h,
				(SELECT ARRAY[%[6]s]::text[] AS s) AS syl`,
			Registrants, Providers, InZonePercent, SignedPercent, n, strings.Join(quoted, ",")), nil},
		{"analyze source", `ANALYZE populate_src`, nil},
		// The sorts below (a million labels, two million name server
		// rows) stay in memory instead of spilling to disk.
		{"work_mem", `SET LOCAL work_mem = '64MB'`, nil},
		{"registrants", `INSERT INTO registrants (handle, name, email)
			SELECT 'LAB-' || lpad(r::text, 6, '0'), 'Lab Registrant ' || r, 'registrant' || r || '@example.net'
			FROM (SELECT DISTINCT registrant AS r FROM populate_src) AS x
			ORDER BY r
			ON CONFLICT (handle) DO NOTHING`, nil},
		{"provider hosts", `INSERT INTO hosts (fqdn)
			SELECT 'ns' || k || '.hosting' || lpad(p::text, 3, '0') || '.' || $2 || '.'
			FROM generate_series(1, $1::int) AS p, generate_series(1, 2) AS k
			ORDER BY p, k
			ON CONFLICT (fqdn) DO NOTHING`, []any{Providers, providerTLD}},
		{"new domains table", `CREATE TEMP TABLE populate_new (id bigint, label text) ON COMMIT DROP`, nil},
		{"domains", `WITH ins AS (
				INSERT INTO domains (name, registrant_id)
				SELECT p.label, r.id FROM populate_src p
				JOIN registrants r ON r.handle = 'LAB-' || lpad(p.registrant::text, 6, '0')
				WHERE NOT EXISTS (SELECT 1 FROM domains x WHERE x.name = p.label)
				ORDER BY p.label
				RETURNING id, name)
			INSERT INTO populate_new SELECT id, name FROM ins`, nil},
		{"analyze new domains", `ANALYZE populate_new`, nil},
		// Every id the next inserts use comes from a row joined in the
		// same statement, so the foreign key checks can never fail; as a
		// superuser, skip their per-row triggers (like pg_restore
		// --disable-triggers), which would otherwise take most of the
		// time. Without superuser the checks run and it is just slower.
		{"skip foreign key triggers", `SELECT set_config('session_replication_role', 'replica', true)
			WHERE current_setting('is_superuser')::bool`, nil},
		{"in-zone hosts", `INSERT INTO hosts (fqdn, domain_id, ipv4, ipv6)
			SELECT 'ns' || k || '.' || p.label || '.' || $1 || '.', d.id,
				ARRAY[('192.0.2.' || (1 + ((p.glue >> (8 * k)) & 255) % 254))::inet],
				CASE WHEN p.glue & 1 = 0
					THEN ARRAY[('2001:db8:' || to_hex((p.glue >> 24) & 65535) || '::' || k)::inet]
					ELSE '{}'::inet[] END
			FROM populate_src p JOIN populate_new d ON d.label = p.label, generate_series(1, 2) AS k
			WHERE p.inzone
			ORDER BY d.id, k
			ON CONFLICT (fqdn) DO NOTHING`, []any{tld}},
		{"name servers", `INSERT INTO domain_ns (domain_id, host_id)
			SELECT d.id, ho.id
			FROM populate_src p JOIN populate_new d ON d.label = p.label, generate_series(1, 2) AS k,
				LATERAL (SELECT CASE WHEN p.inzone
					THEN 'ns' || k || '.' || p.label || '.' || $1 || '.'
					ELSE 'ns' || k || '.hosting' || lpad(p.provider::text, 3, '0') || '.' || $2 || '.'
					END AS fqdn) AS want
			JOIN hosts ho ON ho.fqdn = want.fqdn
			ORDER BY d.id, ho.id`, []any{tld, providerTLD}},
		{"DS records", `INSERT INTO ds_records (domain_id, key_tag, algorithm, digest_type, digest)
			SELECT d.id, get_byte(x.dg, 0) * 256 + get_byte(x.dg, 1), 13, 2, encode(x.dg, 'hex')
			FROM populate_src p JOIN populate_new d ON d.label = p.label,
				LATERAL (SELECT sha256(convert_to(p.label || '.' || $1 || '.', 'UTF8')) AS dg) AS x
			WHERE p.signed
			ORDER BY d.id`, []any{tld}},
		// Triggers back on before the journal row: its NOTIFY must fire.
		{"restore triggers", `SELECT set_config('session_replication_role', 'origin', true)
			WHERE current_setting('is_superuser')::bool`, nil},
		// Last, so the row can say how many domains were new; it is in
		// the same transaction, so it is still atomic with the load.
		{"journal", `INSERT INTO journal (op, domain, detail)
			SELECT 'bulk-load', NULL, jsonb_build_object('count', $1::int, 'inserted', count(*), 'tld', $2::text)
			FROM populate_new`, []any{n, tld}},
	}
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("populate %s with %d domains: %s: %w", tld, n, st.what, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("populate %s with %d domains: commit: %w", tld, n, err)
	}
	return nil
}

// normaliseTLD accepts "test", "test." or "co.jp" and returns it lower
// case without dots at the ends.
func normaliseTLD(tld string) (string, error) {
	t := strings.Trim(strings.ToLower(strings.TrimSpace(tld)), ".")
	if t == "" {
		return "", fmt.Errorf("%w: empty TLD", ErrInvalid)
	}
	for _, l := range strings.Split(t, ".") {
		if !ldhLabel(l) {
			return "", fmt.Errorf("%w: TLD %q: label %q is not letters, digits and inner hyphens", ErrInvalid, tld, l)
		}
	}
	return t, nil
}
