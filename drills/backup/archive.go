package backup

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ArchiveCommand is an archive_command that copies each finished WAL
// segment into walDir (never overwriting: a segment archived twice must
// be the same file, and PostgreSQL retries until the command succeeds)
// and, when p is set, also pushes it to the pgBackRest repository, which
// pgBackRest needs for its own backups and restores.
func ArchiveCommand(walDir string, p *PgBackRest) string {
	cmd := fmt.Sprintf(`test -f "%s/%%f" || cp "%%p" "%s/%%f"`, walDir, walDir)
	if p != nil {
		cmd = fmt.Sprintf(`(%s) && pgbackrest --config=%s --stanza=%s archive-push "%%p"`, cmd, p.ConfigFile, p.Stanza)
	}
	return cmd
}

// PgBackRestConfig is the text of a pgBackRest configuration file for a
// local cluster: the repository at repoPath, the cluster's data directory,
// port and socket directory. Logs go to the console only: a file log
// would need a directory outside the repository.
func PgBackRestConfig(stanza, repoPath, dataDir string, port int, socketDir string) string {
	return fmt.Sprintf(`# regdr: pgBackRest stanza for the registry database (written by regdr).
[global]
repo1-path=%s
repo1-retention-full=3
lock-path=%s
log-level-file=off
log-level-console=warn
start-fast=y
compress-type=lz4

[%s]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
`, repoPath, filepath.Join(repoPath, "lock"), stanza, dataDir, port, socketDir)
}

// EnableArchiving creates walDir for the server owner and sets
// archive_mode and archive_command with ALTER SYSTEM on the cluster at
// conn (as a superuser). archive_mode takes effect only after a restart,
// which the caller does.
func EnableArchiving(ctx context.Context, conn, walDir string, p *PgBackRest) error {
	own, err := serverOwner()
	if err != nil {
		return err
	}
	if err := own.mkdirOwned(walDir); err != nil {
		return fmt.Errorf("WAL archive: %w", err)
	}
	if p != nil {
		for _, d := range []string{filepath.Dir(p.ConfigFile)} {
			if err := own.mkdirOwned(d); err != nil {
				return fmt.Errorf("pgBackRest: %w", err)
			}
		}
	}
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		return fmt.Errorf("enable WAL archiving: connect: %w", err)
	}
	defer closeConn(ctx, c)
	quoted := "'" + strings.ReplaceAll(ArchiveCommand(walDir, p), "'", "''") + "'"
	for _, s := range []string{
		`ALTER SYSTEM SET archive_mode = 'on'`,
		`ALTER SYSTEM SET archive_command = ` + quoted,
		// A quiet registry still gets its WAL archived within a minute,
		// so PITR can reach any instant older than that.
		`ALTER SYSTEM SET archive_timeout = '60s'`,
	} {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("enable WAL archiving: %s: %w", s, err)
		}
	}
	return nil
}

// InitPgBackRest writes the stanza's configuration file (0600, owned by
// the server owner), creates the repository and runs stanza-create. The
// cluster must be running with archiving to the repository enabled.
func InitPgBackRest(ctx context.Context, p *PgBackRest, dataDir string, port int, socketDir string) error {
	own, err := serverOwner()
	if err != nil {
		return err
	}
	if err := own.mkdirOwned(p.RepoPath); err != nil {
		return fmt.Errorf("pgBackRest repository: %w", err)
	}
	if err := own.mkdirOwned(filepath.Dir(p.ConfigFile)); err != nil {
		return fmt.Errorf("pgBackRest config: %w", err)
	}
	if err := own.writeOwned(p.ConfigFile, []byte(PgBackRestConfig(p.Stanza, p.RepoPath, dataDir, port, socketDir))); err != nil {
		return err
	}
	if _, err := own.run(ctx, "/", "pgbackrest", p.args("stanza-create")...); err != nil {
		return fmt.Errorf("pgBackRest stanza %s: %w", p.Stanza, err)
	}
	return nil
}
