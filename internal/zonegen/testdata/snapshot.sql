-- A small registry for ReadSnapshot: every rule of the pinned schema's
-- delegation definition has a row that tests it.
INSERT INTO domains (id, name, status) VALUES
	(1, 'kumo',   'active'),   -- in-zone name servers with glue, one DS
	(2, 'yama',   'active'),   -- out-of-zone name servers only
	(3, 'gone',   'inactive'), -- not delegated: no NS, no DS, no glue in the zone
	(4, 'bare',   'active'),   -- no name servers: not a delegation
	(5, 'kawa',   'active');   -- shares kumo's in-zone server, two DS

INSERT INTO hosts (id, fqdn, domain_id, ipv4, ipv6) VALUES
	(1, 'ns1.kumo.test.',     1, '{192.0.2.1}', '{2001:db8::1}'),
	(2, 'ns2.kumo.test.',     1, '{192.0.2.2,192.0.2.3}', '{}'),
	(3, 'ns1.hosting07.net.', NULL, '{198.51.100.7}', '{}'),
	(4, 'ns2.hosting07.net.', NULL, '{}', '{}'),
	(5, 'ns1.gone.test.',     3, '{192.0.2.99}', '{}');

INSERT INTO domain_ns (domain_id, host_id) VALUES
	(1, 2), (1, 1),
	(2, 3), (2, 4),
	(3, 5),
	(5, 1), (5, 3);

INSERT INTO ds_records (domain_id, key_tag, algorithm, digest_type, digest) VALUES
	(1, 4242, 13, 2, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'),
	(3, 1111, 13, 2, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'),
	(5, 5, 8, 2, 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc'),
	(5, 6, 13, 2, 'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd');

INSERT INTO journal (op, domain, detail) VALUES
	('fixture', NULL, '{"rows": "testdata/snapshot.sql"}'),
	('fixture', NULL, '{"rows": "testdata/snapshot.sql"}'),
	('fixture', NULL, '{"rows": "testdata/snapshot.sql"}');
