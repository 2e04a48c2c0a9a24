package pglab

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/regdr/regdr/internal/pgrun"
)

// owner is who runs the server binaries and owns the cluster directories
// (user postgres when we are root).
type owner = pgrun.Owner

func serverOwner() (owner, error) { return pgrun.ServerOwner() }

// prepareDir creates dir (it must be absent or empty), gives it to the
// server owner, and makes every ancestor searchable by that owner: initdb
// and the postmaster open paths below it, and t.TempDir's top directory is
// created 0700 by root.
func prepareDir(dir string, own owner, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("directory %s is not empty: pglab creates clusters only in new or empty directories", dir)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	if own.Cred == nil {
		return nil
	}
	if err := os.Chown(dir, own.UID, own.GID); err != nil {
		return fmt.Errorf("chown %s to postgres: %w", dir, err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if !searchable(fi, own) {
			// Only the search bit: the server can pass through,
			// not list the directory.
			mode := fi.Mode().Perm() | 0o001
			if err := os.Chmod(p, mode); err != nil {
				return fmt.Errorf("make %s traversable for postgres: %w", p, err)
			}
			log.Warn("made directory traversable for user postgres", "dir", p, "mode", fmt.Sprintf("%#o", mode))
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func searchable(fi fs.FileInfo, own owner) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case int(st.Uid) == own.UID:
		return perm&0o100 != 0
	case int(st.Gid) == own.GID:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// run runs one server binary as the server owner in dir.
func run(ctx context.Context, own owner, dir, bin string, args ...string) ([]byte, error) {
	out, err := pgrun.Run(ctx, own, dir, bin, args...)
	return []byte(out), err
}

// waitSeconds turns ctx's deadline into a -t argument for pg_ctl.
func waitSeconds(ctx context.Context) string { return strconv.Itoa(pgrun.WaitSeconds(ctx)) }

// processAlive reports whether pid is a live process (a zombie is dead).
func processAlive(pid int) bool { return pgrun.ProcessAlive(pid) }
