// Package backup proves that the registry's backups restore (issue 6).
// RIPE NCC found in 2012, in the middle of an outage, that its backups did
// not exist; a backup that has never been restored is not a backup.
//
// Three parts:
//
//   - the catalog (catalog.go): one JSON record per backup in etcd at
//     <prefix>/backups/<id> (type, site, time, size, SHA-256 of the
//     manifest, LSN range, and the registry's counts at backup time), and
//     each restore test under <prefix>/backups/<id>/verifications/<time>;
//   - take (take.go): pg_basebackup in plain format with backup_manifest
//     and -X stream, or a full pgBackRest backup, run as the PostgreSQL
//     server owner;
//   - verify (verify.go and the files it calls): integrity, a real restore
//     into a scratch PostgreSQL on a free loopback port (to the backup's
//     end, or PITR to a target time from the WAL archive), pg_amcheck,
//     semantic checks against the catalog's facts, the zone rebuilt from
//     the restored registry compared with the version published then,
//     the key bundles of that time, and a teardown that always runs.
//
// A phase that cannot establish its outcome is "unknown", never passed;
// "no zone version published at that time" is a failure. Verify returns
// the whole report; Record puts it in the catalog and the audit log.
//
// Who runs what: `regdr backup take|list|verify` (cmd/regdr/backup.go) and
// the agent at the verify site on schedules.backup_verify
// (internal/agent/backup.go, elected through internal/schedule).
package backup
