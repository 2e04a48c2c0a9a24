package pgctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// owner is who owns a data directory and so runs the server binaries on it
// (PostgreSQL refuses to run as root and insists PGDATA is its own).
type owner struct {
	cred *syscall.Credential // nil: run as ourselves
	uid  int
	gid  int
}

// ownerOf is the owner of path, or of its nearest existing ancestor, when
// we are root; otherwise ourselves (only root can switch users).
func ownerOf(path string) (owner, error) {
	if os.Geteuid() != 0 {
		return owner{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	p := path
	for {
		fi, err := os.Stat(p)
		if err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return owner{}, fmt.Errorf("owner of %s: no uid on this system", p)
			}
			if st.Uid == 0 {
				return owner{}, fmt.Errorf("owner of %s is root: PostgreSQL does not run as root; chown it to the server's user", p)
			}
			return owner{cred: &syscall.Credential{Uid: st.Uid, Gid: st.Gid}, uid: int(st.Uid), gid: int(st.Gid)}, nil
		}
		if !errors.Is(err, os.ErrNotExist) || p == filepath.Dir(p) {
			return owner{}, fmt.Errorf("owner of %s: %w", path, err)
		}
		p = filepath.Dir(p)
	}
}

func (o owner) chown(path string) error {
	if o.cred == nil {
		return nil
	}
	if err := os.Lchown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// serverEnv is our environment without PG* variables: an inherited PGDATA,
// PGHOST or PGPORT would silently point a binary at another cluster.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C", "TZ=UTC")
}

// run runs one PostgreSQL binary as own in dir and returns its combined
// output, which a failure's error also carries.
func run(ctx context.Context, own owner, dir, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	if own.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: own.cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves a postmaster behind; should it ever keep our
	// pipe open, Wait must not hang on it.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// processAlive reports whether pid is a live process; a zombie is dead (an
// orphaned postmaster's reaper may be a pid 1 that never reaps).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		_, noProc := os.Stat("/proc/self/stat")
		return noProc != nil
	}
	s := string(b)
	i := strings.LastIndex(s, ") ")
	if i < 0 || i+2 >= len(s) {
		return true
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// pgCtlWait turns ctx's deadline into pg_ctl's -t, so its own wait ends no
// later than ours.
func pgCtlWait(ctx context.Context) string { return strconv.Itoa(waitSeconds(ctx)) }
