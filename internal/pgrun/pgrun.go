// Package pgrun runs PostgreSQL (and pgBackRest) binaries as the user that
// owns the data: PostgreSQL refuses to run as root and insists that PGDATA
// is its own, and regdr's agent, lab and tests run as root. The lab, the
// failover's local control and the backup restore tests share it.
package pgrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Owner is who runs the binaries. Cred is nil when we run as ourselves.
type Owner struct {
	Cred     *syscall.Credential
	UID, GID int
}

// ServerOwner is the OS user "postgres" when we are root, otherwise the
// current user.
func ServerOwner() (Owner, error) {
	if os.Geteuid() != 0 {
		return Owner{UID: os.Geteuid(), GID: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return Owner{}, fmt.Errorf("running as root, so PostgreSQL must run as user postgres: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return Owner{}, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return Owner{}, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return Owner{Cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, UID: uid, GID: gid}, nil
}

// OwnerOf is the owner of path, or of its nearest existing ancestor, when
// we are root; otherwise ourselves (only root can switch users).
func OwnerOf(path string) (Owner, error) {
	if os.Geteuid() != 0 {
		return Owner{UID: os.Geteuid(), GID: os.Getegid()}, nil
	}
	p := path
	for {
		fi, err := os.Stat(p)
		if err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return Owner{}, fmt.Errorf("owner of %s: no uid on this system", p)
			}
			if st.Uid == 0 {
				return Owner{}, fmt.Errorf("owner of %s is root: PostgreSQL does not run as root; chown it to the server's user", p)
			}
			return Owner{Cred: &syscall.Credential{Uid: st.Uid, Gid: st.Gid}, UID: int(st.Uid), GID: int(st.Gid)}, nil
		}
		if !errors.Is(err, os.ErrNotExist) || p == filepath.Dir(p) {
			return Owner{}, fmt.Errorf("owner of %s: %w", path, err)
		}
		p = filepath.Dir(p)
	}
}

// Chown gives path to o (nothing when we run as ourselves).
func (o Owner) Chown(path string) error {
	if o.Cred == nil {
		return nil
	}
	if err := os.Lchown(path, o.UID, o.GID); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// Env is our environment without PG* (and PGBACKREST_*) variables: an
// inherited PGDATA, PGHOST or PGBACKREST_STANZA would silently point a
// binary at something else.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C", "TZ=UTC")
}

// Run runs bin as o in dir and returns its combined output; a failure's
// error carries the output's last lines (the tools print no secrets: the
// lab trusts loopback, real sites use .pgpass).
func Run(ctx context.Context, o Owner, dir, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = Env()
	if o.Cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.Cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves a postmaster behind; should it ever keep our
	// pipe open, Wait must not hang on it.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, lastLines(out.String(), 12))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ProcessAlive reports whether pid is a live process. A zombie counts as
// dead: an orphaned postmaster's reaper may be a pid 1 that never reaps.
func ProcessAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// Gone since the probe, unless there is no procfs at all; then
		// trust the probe.
		_, noProc := os.Stat("/proc/self/stat")
		return noProc != nil
	}
	// The state follows the parenthesised command name, which may itself
	// contain ") ".
	s := string(b)
	i := strings.LastIndex(s, ") ")
	if i < 0 || i+2 >= len(s) {
		return true
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// WaitSeconds turns ctx's deadline into whole seconds for pg_ctl -t, so
// its own wait ends no later than ours; 60 (pg_ctl's default) without one.
func WaitSeconds(ctx context.Context) int {
	d, ok := ctx.Deadline()
	if !ok {
		return 60
	}
	return max(1, int(time.Until(d).Seconds()))
}
