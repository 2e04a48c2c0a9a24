package backup

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/regdr/regdr/internal/pgrun"
)

// owner is who runs the PostgreSQL and pgBackRest binaries and owns the
// backup and scratch directories: user postgres when we are root
// (PostgreSQL refuses root), otherwise ourselves.
type owner struct{ pgrun.Owner }

func serverOwner() (owner, error) {
	o, err := pgrun.ServerOwner()
	return owner{o}, err
}

// run runs bin as the owner in dir; a failure's error holds the tool's
// last output lines (tools here print no secrets: trust auth, no passwords).
func (o owner) run(ctx context.Context, dir, bin string, args ...string) ([]byte, error) {
	out, err := pgrun.Run(ctx, o.Owner, dir, bin, args...)
	return []byte(out), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mkdirOwned creates dir (and parents) for the owner and makes every
// ancestor traversable by it: t.TempDir and /root are 0700.
func (o owner) mkdirOwned(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if o.Cred == nil {
		return nil
	}
	if err := os.Chown(dir, o.UID, o.GID); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if !o.searchable(fi) {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("make %s traversable for postgres: %w", p, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (o owner) searchable(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case int(st.Uid) == o.UID:
		return perm&0o100 != 0
	case int(st.Gid) == o.GID:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// writeOwned writes a file the owner owns, readable only by it.
func (o owner) writeOwned(path string, body []byte) error {
	if err := os.WriteFile(path, body, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if o.Cred != nil {
		if err := os.Chown(path, o.UID, o.GID); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}

// processAlive reports whether pid is a live process (a zombie is dead).
func processAlive(pid int) bool { return pgrun.ProcessAlive(pid) }

// freePort finds a free TCP port on host by binding port 0.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
