package backup

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/zonestore"
)

// PgBackRestFrom turns the config's pgbackrest section into a PgBackRest
// (nil when there is none).
func PgBackRestFrom(s config.Backup) *PgBackRest {
	if s.PgBackRest == nil {
		return nil
	}
	return &PgBackRest{Stanza: s.PgBackRest.Stanza, ConfigFile: s.PgBackRest.ConfigFile, RepoPath: s.PgBackRest.RepoPath}
}

// ActiveSite is the site the active-site record in etcd names.
func ActiveSite(ctx context.Context, cfg *config.Config, cli *clientv3.Client) (string, error) {
	a, ok, err := store.GetActive(ctx, cli, store.Keys{Prefix: cfg.Etcd.Prefix})
	if err != nil {
		return "", fmt.Errorf("read active site: %w", err)
	}
	if !ok {
		return "", errors.New("no active site recorded in etcd")
	}
	return a.Site, nil
}

// VerifySite is the site that runs restore tests: backup.verify_site, or
// else the standby (the data site that is not active). With a single data
// site it is that site.
func VerifySite(ctx context.Context, cfg *config.Config, cli *clientv3.Client) (string, error) {
	s := cfg.BackupSettings()
	if s.VerifySite != "" {
		return s.VerifySite, nil
	}
	active, err := ActiveSite(ctx, cfg, cli)
	if err != nil {
		return "", err
	}
	var sites []string
	for _, d := range cfg.DataSites() {
		if d.Name != active {
			sites = append(sites, d.Name)
		}
	}
	if len(sites) == 0 {
		return active, nil
	}
	sort.Strings(sites)
	return sites[0], nil
}

// TakeOptionsFor builds TakeOptions for a backup of site's database.
func TakeOptionsFor(cfg *config.Config, site, typ string) (TakeOptions, error) {
	s, ok := cfg.Site(site)
	if !ok || s.Witness || s.Postgres == "" {
		return TakeOptions{}, fmt.Errorf("site %q has no database in %s", site, cfg.Path())
	}
	bin, err := pglab.FindBinDir()
	if err != nil {
		return TakeOptions{}, err
	}
	set := cfg.BackupSettings()
	if typ == TypePgBackRest && set.PgBackRest == nil {
		return TakeOptions{}, errors.New("--type pgbackrest needs backup.pgbackrest in the config")
	}
	return TakeOptions{Type: typ, Site: site, ConnString: s.Postgres, Dir: set.Dir, BinDir: bin, PgBackRest: PgBackRestFrom(set)}, nil
}

// VerifyOptionsFor builds VerifyOptions for a restore test of b at site
// (whose zone store the reconciliation reads, and whose key bundles in
// etcd the keys phase opens).
func VerifyOptionsFor(cfg *config.Config, cli *clientv3.Client, site string, b Backup) (VerifyOptions, error) {
	s, ok := cfg.Site(site)
	if !ok || s.Witness {
		return VerifyOptions{}, fmt.Errorf("site %q cannot verify backups: it is not a data site in %s", site, cfg.Path())
	}
	bin, err := pglab.FindBinDir()
	if err != nil {
		return VerifyOptions{}, err
	}
	set := cfg.BackupSettings()
	zs, err := zonestore.Open(filepath.Join(cfg.Resolve(s.ZoneDir), "store"))
	if err != nil {
		return VerifyOptions{}, err
	}
	return VerifyOptions{
		Backup: b, Site: site, BinDir: bin, ScratchDir: set.ScratchDir, WALArchiveDir: set.WALArchiveDir,
		PgBackRest: PgBackRestFrom(set), RowTolerancePercent: *set.RowTolerancePercent,
		Assertions: set.Assertions, Zone: set.Zone, ZoneStore: zs,
		Keys: BundleKeyCheck(cli, cfg, site, zs, set.Zone),
		PublishedAt: func(ctx context.Context, zone string, t time.Time) (store.PublishedVersion, bool, error) {
			return store.PublishedAsOf(ctx, cli, store.Keys{Prefix: cfg.Etcd.Prefix}, zone, t)
		},
	}, nil
}

// Record stores v under its backup in the catalog and appends it to the
// audit log as action "backup.verify" by who. Both are attempted; the
// errors of both are returned.
func Record(ctx context.Context, cli *clientv3.Client, prefix, who string, v Verification) error {
	cat := NewCatalog(cli, prefix)
	errCat := cat.Record(ctx, v)
	result := v.Result
	if f := v.Failure(); f != "" {
		result = "failed: " + f
	}
	if len(result) > 500 {
		result = result[:500] + "…"
	}
	detail := map[string]string{"site": v.Site, "restore_point": v.RestorePoint.Format(time.RFC3339)}
	for _, p := range v.Phases {
		detail["phase."+p.Name] = fmt.Sprintf("%s %.2fs", p.Status, p.Duration.Seconds())
	}
	if u := v.Unknown(); len(u) > 0 {
		detail["unknown"] = strings.Join(u, ",")
	}
	_, errAudit := audit.New(cli, store.Keys{Prefix: prefix}).Append(ctx, audit.Entry{
		Who: who, Action: "backup.verify", Target: v.BackupID, Result: result, Detail: detail,
	})
	if errAudit != nil {
		errAudit = fmt.Errorf("audit backup verification: %w", errAudit)
	}
	return errors.Join(errCat, errAudit)
}

// Summary is what status shows: the newest backup, the newest restore
// test and the newest passing one.
type Summary struct {
	LastBackup   *Backup
	LastRun      *Verification
	LastVerified *Verification
}

// Summarize reads the catalog.
func Summarize(ctx context.Context, cat *Catalog) (Summary, error) {
	var s Summary
	bs, err := cat.List(ctx)
	if err != nil {
		return s, err
	}
	if len(bs) > 0 {
		s.LastBackup = &bs[len(bs)-1]
	}
	vs, err := cat.Verifications(ctx)
	if err != nil {
		return s, err
	}
	for i := range vs {
		v := vs[i]
		s.LastRun = &v
		if v.Passed() {
			s.LastVerified = &v
		}
	}
	return s, nil
}
