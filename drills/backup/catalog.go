package backup

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Backup types.
const (
	TypeBasebackup = "basebackup"
	TypePgBackRest = "pgbackrest"
)

// Facts are what the registry held when the backup was taken, read in
// one snapshot just before the copy started; the semantic check compares
// the restored database with them.
type Facts struct {
	Domains      int64 `json:"domains"`
	Delegations  int64 `json:"delegations"`
	Hosts        int64 `json:"hosts"`
	DS           int64 `json:"ds"`
	MaxJournalID int64 `json:"max_journal_id"`
	// JournalRows is how many journal rows had ids up to MaxJournalID.
	// Ids have holes (a registry write that fails after taking its
	// journal id rolls back), so the check is that the restore has at
	// least these rows up to that id, not that ids are gapless.
	JournalRows int64 `json:"journal_rows"`
}

// Backup is one catalog record, kept at <prefix>/backups/<id>.
type Backup struct {
	ID   string `json:"id"`
	Type string `json:"type"` // TypeBasebackup or TypePgBackRest
	// Site is the site whose database was copied.
	Site string `json:"site"`
	// Started and Time: Time is when the copy finished, the instant a
	// restore without a target time reproduces (and the instant whose
	// published zone the restored registry must match).
	Started time.Time `json:"started"`
	Time    time.Time `json:"time"`
	// Size is the bytes on disk (basebackup) or in the repository
	// (pgBackRest).
	Size int64 `json:"size"`
	// ManifestSHA256 is the SHA-256 of backup_manifest (basebackup) or of
	// the pgBackRest backup.manifest: a later verify that finds another
	// manifest knows the backup was replaced.
	ManifestSHA256 string `json:"manifest_sha256"`
	StartLSN       string `json:"start_lsn"`
	EndLSN         string `json:"end_lsn"`
	// StartWAL is the WAL segment holding StartLSN; PITR needs every
	// archived segment from it on.
	StartWAL string `json:"start_wal,omitempty"`
	Timeline int    `json:"timeline,omitempty"`
	// Path is the backup's directory (basebackup); Label the pgBackRest
	// set label.
	Path   string `json:"path,omitempty"`
	Label  string `json:"label,omitempty"`
	Stanza string `json:"stanza,omitempty"`
	Facts  Facts  `json:"facts"`
}

// Catalog is the backup catalog in etcd.
type Catalog struct {
	cli    *clientv3.Client
	prefix string
}

// NewCatalog keeps its records under prefix (the config's etcd.prefix).
func NewCatalog(cli *clientv3.Client, prefix string) *Catalog {
	p := strings.TrimRight(prefix, "/")
	if p == "" {
		p = "/regdr"
	}
	return &Catalog{cli: cli, prefix: p}
}

// ErrNotFound: no such backup (or no backup at all).
var ErrNotFound = errors.New("backup not found")

func (c *Catalog) backups() string      { return c.prefix + "/backups/" }
func (c *Catalog) key(id string) string { return c.backups() + url.PathEscape(id) }

// VerificationKey is where one restore test of backup id is kept; times
// are fixed-width so key order is time order.
func (c *Catalog) VerificationKey(id string, at time.Time) string {
	return c.key(id) + "/verifications/" + at.UTC().Format("20060102T150405.000000000Z")
}

// Add records b; an id already in the catalog is refused (a backup is
// never silently replaced).
func (c *Catalog) Add(ctx context.Context, b Backup) error {
	val, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("catalog backup %s: %w", b.ID, err)
	}
	k := c.key(b.ID)
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("catalog backup %s: %w", b.ID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("catalog backup %s: id already in the catalog", b.ID)
	}
	return nil
}

// Put overwrites b's record. Tests use it to stage a catalog that
// disagrees with its backup; regdr itself only Adds.
func (c *Catalog) Put(ctx context.Context, b Backup) error {
	val, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("catalog backup %s: %w", b.ID, err)
	}
	if _, err := c.cli.Put(ctx, c.key(b.ID), string(val)); err != nil {
		return fmt.Errorf("catalog backup %s: %w", b.ID, err)
	}
	return nil
}

// Get returns backup id.
func (c *Catalog) Get(ctx context.Context, id string) (Backup, error) {
	resp, err := c.cli.Get(ctx, c.key(id))
	if err != nil {
		return Backup{}, fmt.Errorf("read backup %s from catalog: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return Backup{}, fmt.Errorf("backup %s: %w", id, ErrNotFound)
	}
	var b Backup
	if err := json.Unmarshal(resp.Kvs[0].Value, &b); err != nil {
		return Backup{}, fmt.Errorf("backup %s: bad catalog record: %w", id, err)
	}
	return b, nil
}

// List returns every backup, oldest first.
func (c *Catalog) List(ctx context.Context) ([]Backup, error) {
	resp, err := c.cli.Get(ctx, c.backups(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list backup catalog: %w", err)
	}
	var out []Backup
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), c.backups())
		if strings.Contains(rest, "/") {
			continue // a verification
		}
		var b Backup
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			return nil, fmt.Errorf("backup catalog: bad record %s: %w", kv.Key, err)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Backup) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// Latest returns the newest backup.
func (c *Catalog) Latest(ctx context.Context) (Backup, error) {
	all, err := c.List(ctx)
	if err != nil {
		return Backup{}, err
	}
	if len(all) == 0 {
		return Backup{}, fmt.Errorf("latest backup: catalog is empty: %w", ErrNotFound)
	}
	return all[len(all)-1], nil
}

// Resolve returns the backup named by ref: an id, or "latest"/"".
func (c *Catalog) Resolve(ctx context.Context, ref string) (Backup, error) {
	if ref == "" || ref == "latest" {
		return c.Latest(ctx)
	}
	return c.Get(ctx, ref)
}

// Record stores a verification under its backup.
func (c *Catalog) Record(ctx context.Context, v Verification) error {
	val, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("record verification of %s: %w", v.BackupID, err)
	}
	if _, err := c.cli.Put(ctx, c.VerificationKey(v.BackupID, v.Started), string(val)); err != nil {
		return fmt.Errorf("record verification of %s: %w", v.BackupID, err)
	}
	return nil
}

// Verifications returns every recorded restore test, oldest first.
func (c *Catalog) Verifications(ctx context.Context) ([]Verification, error) {
	resp, err := c.cli.Get(ctx, c.backups(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list backup verifications: %w", err)
	}
	var out []Verification
	for _, kv := range resp.Kvs {
		if !strings.Contains(string(kv.Key), "/verifications/") {
			continue
		}
		var v Verification
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("bad verification record %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Verification) int { return a.Finished.Compare(b.Finished) })
	return out, nil
}
