-- The lab registry (schema public). Tables and columns are pinned in the
-- project's schema brief: the zone generator reads exactly these. Every
-- statement is idempotent so Apply can run on every lab start.

CREATE TABLE IF NOT EXISTS registrants (
	id bigserial PRIMARY KEY,
	handle text NOT NULL UNIQUE,
	name text NOT NULL,
	email text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS domains (
	id bigserial PRIMARY KEY,
	name text NOT NULL UNIQUE,              -- the label under the TLD, e.g. 'kumo' for kumo.test.
	registrant_id bigint REFERENCES registrants(id),
	status text NOT NULL DEFAULT 'active',  -- only 'active' domains are delegated
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS hosts (
	id bigserial PRIMARY KEY,
	fqdn text NOT NULL UNIQUE,              -- absolute, lower case, WITH trailing dot: 'ns1.kumo.test.'
	domain_id bigint REFERENCES domains(id) ON DELETE CASCADE,  -- set for in-zone (glue) hosts
	ipv4 inet[] NOT NULL DEFAULT '{}',
	ipv6 inet[] NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS domain_ns (
	domain_id bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	host_id bigint NOT NULL REFERENCES hosts(id),
	PRIMARY KEY (domain_id, host_id)
);

CREATE TABLE IF NOT EXISTS ds_records (
	id bigserial PRIMARY KEY,
	domain_id bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	key_tag integer NOT NULL,
	algorithm smallint NOT NULL,
	digest_type smallint NOT NULL,
	digest text NOT NULL                    -- hex
);

-- The journal is append-only: the history the zone generator follows and
-- the load drills judge data loss against. Every registry write inserts its
-- journal row in the same transaction, so a committed change always has a
-- journal row and a rolled-back one never does.
CREATE TABLE IF NOT EXISTS journal (
	id bigserial PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT clock_timestamp(),
	op text NOT NULL,
	domain text,
	detail jsonb
);

-- Indexes the pinned tables do not declare: foreign keys are followed from
-- the referenced side on every delete (ON DELETE CASCADE) and by the zone
-- generator's joins.
CREATE INDEX IF NOT EXISTS hosts_domain_id_idx ON hosts (domain_id);
CREATE INDEX IF NOT EXISTS domain_ns_host_id_idx ON domain_ns (host_id);
CREATE INDEX IF NOT EXISTS ds_records_domain_id_idx ON ds_records (domain_id);
-- The same DS twice is one record in DNS; refusing the duplicate also makes
-- Populate repeatable.
CREATE UNIQUE INDEX IF NOT EXISTS ds_records_unique_idx
	ON ds_records (domain_id, key_tag, algorithm, digest_type, digest);

-- Wake whoever waits for changes (the zone generator LISTENs). A NOTIFY is
-- delivered only when its transaction commits, so a listener never sees an
-- id that was rolled back.
CREATE OR REPLACE FUNCTION journal_notify() RETURNS trigger
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('registry_changed', NEW.id::text);
	RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER journal_notify
	AFTER INSERT ON journal
	FOR EACH ROW EXECUTE FUNCTION journal_notify();

-- registry_app is the role a registry application logs in as (grant it
-- LOGIN or membership to a login role). It may change registry data and
-- append to the journal, but not rewrite or remove journal rows: only the
-- table owner (and superusers) can. In the lab, role regdr is a superuser,
-- so the rule binds registry_app, not regdr.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'registry_app') THEN
		CREATE ROLE registry_app NOLOGIN;
	END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO registry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON registrants, domains, hosts, domain_ns, ds_records TO registry_app;
GRANT SELECT, INSERT ON journal TO registry_app;
REVOKE UPDATE, DELETE, TRUNCATE ON journal FROM PUBLIC, registry_app;
GRANT USAGE ON SEQUENCE registrants_id_seq, domains_id_seq, hosts_id_seq, ds_records_id_seq, journal_id_seq TO registry_app;
