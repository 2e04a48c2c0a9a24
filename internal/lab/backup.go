package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/pglab"
)

// labBackupCron runs the lab's restore test daily at 03:30 UTC; tests
// and operators run `regdr backup verify` by hand in between.
const labBackupCron = "30 3 * * *"

// planBackup adds the backup section: everything under <dir>/backup (WAL
// archive, base backups, a pgBackRest repository with its own config file,
// scratch space for restores).
func (l *Lab) planBackup(cfg *config.Config, o Options) error {
	root := filepath.Join(o.Dir, "backup")
	cfg.Backup = &config.Backup{
		Dir:           root,
		WALArchiveDir: filepath.Join(root, "wal"),
		ScratchDir:    filepath.Join(root, "scratch"),
		PgBackRest: &config.PgBackRest{
			Stanza:     "registry",
			ConfigFile: filepath.Join(root, "pgbackrest", "pgbackrest.conf"),
			RepoPath:   filepath.Join(root, "pgbackrest", "repo"),
		},
	}
	cfg.Schedules.BackupVerify = labBackupCron
	return nil
}

// upBackup turns on WAL archiving at tokyo (archive_mode needs a restart,
// a fast one: the standby reconnects and the agents ride it out) and
// creates the pgBackRest stanza. No backup is taken: that is
// `regdr backup take`.
func (l *Lab) upBackup(ctx context.Context, step func(string, ...any)) error {
	set := l.Cfg.BackupSettings()
	p := backup.PgBackRestFrom(set)
	var pg *PG
	for i := range l.State.Postgres {
		if l.State.Postgres[i].Site == "tokyo" {
			pg = &l.State.Postgres[i]
		}
	}
	if pg == nil {
		return fmt.Errorf("lab backup: no tokyo PostgreSQL in the lab state")
	}
	step("turning on WAL archiving at tokyo into %s (pgBackRest stanza %s)", set.WALArchiveDir, p.Stanza)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := backup.EnableArchiving(ctx, l.SiteConnString("tokyo"), set.WALArchiveDir, p); err != nil {
		return fmt.Errorf("lab backup: %w", err)
	}
	c := &pglab.Cluster{Name: pg.Site, BinDir: pg.BinDir, Dir: pg.Dir, DataDir: pg.DataDir, Host: pg.Host, Port: pg.Port, LogFile: pg.LogFile}
	if err := c.Stop(ctx, "fast"); err != nil {
		return fmt.Errorf("lab backup: restart tokyo for archive_mode: %w", err)
	}
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("lab backup: restart tokyo for archive_mode: %w", err)
	}
	if err := backup.InitPgBackRest(ctx, p, pg.DataDir, pg.Port, pg.Dir); err != nil {
		return fmt.Errorf("lab backup: %w", err)
	}
	return nil
}
