package pglab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// owner is who runs the server binaries and owns the cluster directories.
type owner struct {
	cred *syscall.Credential // nil: run as ourselves
	uid  int
	gid  int
}

// serverOwner is the OS user "postgres" when we are root (PostgreSQL
// refuses to run as root), otherwise the current user.
func serverOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return owner{}, fmt.Errorf("running as root, so PostgreSQL must run as user postgres: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return owner{}, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return owner{}, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return owner{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}

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
	if own.cred == nil {
		return nil
	}
	if err := os.Chown(dir, own.uid, own.gid); err != nil {
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
	case int(st.Uid) == own.uid:
		return perm&0o100 != 0
	case int(st.Gid) == own.gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// serverEnv is our environment without PG* variables: a PGDATA, PGPORT or
// PGHOST inherited from an operator's shell would silently redirect a
// server binary to another cluster.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "TZ=UTC")
}

// run runs one server binary as the server owner in dir and returns its
// combined output in the error when it fails.
func run(ctx context.Context, own owner, dir, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	if own.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: own.cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves the postmaster running; if it ever kept our
	// pipe open, Wait must not hang on it.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// waitSeconds turns ctx's deadline into a -t argument for pg_ctl, so its own
// wait ends no later than ours. Without a deadline pg_ctl's own 60 s limit
// applies.
func waitSeconds(ctx context.Context) string {
	d, ok := ctx.Deadline()
	if !ok {
		return "60"
	}
	s := int(time.Until(d).Seconds())
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// processAlive reports whether pid is a live process. A zombie counts as
// dead: once the postmaster is orphaned its reaper is whatever runs as pid
// 1, which in a container may never reap it.
func processAlive(pid int) bool {
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
