// Package pglab makes PostgreSQL clusters for the lab and the tests from the
// system's PostgreSQL server binaries: a primary with the registry database
// and one physical replication slot per standby, and hot standbys streaming
// from it. It never touches the distribution's default cluster: every
// cluster lives in a directory the caller names, listens only on a loopback
// address and keeps its unix socket in its own directory.
//
// PostgreSQL refuses to run as root, so when the calling process is root
// every server binary runs as the OS user "postgres" and the cluster
// directories are chowned to it.
package pglab

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// binaries are the server programs pglab runs; a directory missing any of
// them is not a usable installation (client-only packages ship pg_ctl's
// siblings but not postgres itself).
var binaries = []string{"initdb", "postgres", "pg_ctl", "pg_basebackup"}

// binGlob is where Debian and Ubuntu install versioned server binaries.
const binGlob = "/usr/lib/postgresql/*/bin"

// FindBinDir returns the newest /usr/lib/postgresql/<major>/bin that holds
// the server binaries pglab needs.
func FindBinDir() (string, error) { return findBinDir(binGlob) }

func findBinDir(glob string) (string, error) {
	dirs, err := filepath.Glob(glob)
	if err != nil {
		return "", fmt.Errorf("find PostgreSQL binaries: pattern %s: %w", glob, err)
	}
	type cand struct {
		dir   string
		major int
	}
	var found []cand
	for _, d := range dirs {
		major, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		ok := true
		for _, b := range binaries {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				ok = false
				break
			}
		}
		if ok {
			found = append(found, cand{d, major})
		}
	}
	if len(found) == 0 {
		return "", errors.New("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install them with: apt-get install -y postgresql-15")
	}
	slices.SortFunc(found, func(a, b cand) int { return b.major - a.major })
	return found[0].dir, nil
}

// Cluster is one PostgreSQL instance made by pglab.
type Cluster struct {
	// Name is the site the cluster belongs to ("tokyo"); it is the
	// cluster_name and, for a standby, its application_name on the primary.
	Name string
	// BinDir holds initdb, postgres, pg_ctl and pg_basebackup.
	BinDir string
	// Dir holds DataDir, LogFile and the unix socket. It is outside the
	// data directory so pg_basebackup never copies the log or the socket.
	// If empty, the parent of DataDir is used.
	Dir string
	// DataDir is PGDATA.
	DataDir string
	// Host is the loopback address the cluster listens on.
	Host string
	// Port is its TCP port (the unix socket uses the same number).
	Port int
	// LogFile receives the server log (pg_ctl -l).
	LogFile string
}

// Options describe a cluster to create.
type Options struct {
	// Name is the site name; it must be a short lower-case identifier
	// because it becomes a replication slot name.
	Name string
	// Dir is created if missing and must be empty or absent: it gets
	// data/, postgres.log and the socket.
	Dir string
	// Host must be a loopback address; default 127.0.0.1.
	Host string
	// Port 0 picks a free port.
	Port int
	// Standbys names the standby sites of a primary; each gets a
	// physical replication slot (SlotName) before any standby exists, so
	// the primary keeps WAL for a standby that is still being built.
	Standbys []string
	// BinDir defaults to FindBinDir() (for a standby: the primary's).
	BinDir string
	// Logger receives progress and the directories pglab changes; nil
	// discards.
	Logger *slog.Logger
}

// SlotName is the physical replication slot the primary keeps for a standby
// site: "osaka" → "regdr_osaka".
func SlotName(standby string) string { return "regdr_" + standby }

func (o *Options) fill() error {
	if !validName(o.Name) {
		return fmt.Errorf("cluster name %q: want 1-40 characters of a-z, 0-9 and _ starting with a letter (it becomes a replication slot name)", o.Name)
	}
	for _, s := range o.Standbys {
		if !validName(s) {
			return fmt.Errorf("standby name %q: want 1-40 characters of a-z, 0-9 and _ starting with a letter", s)
		}
	}
	if o.Dir == "" {
		return fmt.Errorf("cluster %s: no directory given", o.Name)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("cluster %s: directory %s: %w", o.Name, o.Dir, err)
	}
	o.Dir = dir
	// A unix socket path is limited to 107 bytes; fail here with the
	// reason instead of a cryptic postmaster log line.
	if sock := filepath.Join(o.Dir, ".s.PGSQL.65535.lock"); len(sock) > 107 {
		return fmt.Errorf("cluster %s: directory %s is too long for a unix socket path (%d > 107 bytes)", o.Name, o.Dir, len(sock))
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	// The lab opens trust authentication on the address, so it must never
	// be reachable from another machine.
	if ip := net.ParseIP(o.Host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("cluster %s: host %q is not a loopback IP address (the lab trusts every connection, so it listens only on loopback)", o.Name, o.Host)
	}
	if o.Port == 0 {
		p, err := FreePort(o.Host)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", o.Name, err)
		}
		o.Port = p
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("cluster %s: port %d out of range", o.Name, o.Port)
	}
	if o.BinDir == "" {
		d, err := FindBinDir()
		if err != nil {
			return err
		}
		o.BinDir = d
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 40 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (o *Options) cluster() *Cluster {
	return &Cluster{
		Name:    o.Name,
		BinDir:  o.BinDir,
		Dir:     o.Dir,
		DataDir: filepath.Join(o.Dir, "data"),
		Host:    o.Host,
		Port:    o.Port,
		LogFile: filepath.Join(o.Dir, "postgres.log"),
	}
}

// FreePort asks the kernel for a free TCP port on host. Another process may
// take it before the caller binds it; the lab accepts that small race.
func FreePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dir is Dir, or for a Cluster built by hand without it (from a saved lab
// state), the parent of DataDir: pglab always lays clusters out that way.
func (c *Cluster) dir() string {
	if c.Dir != "" {
		return c.Dir
	}
	return filepath.Dir(c.DataDir)
}

// ConnString is a keyword/value connection string for database db as the
// lab role regdr over TCP.
func (c *Cluster) ConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=regdr dbname=%s sslmode=disable", c.Host, c.Port, db)
}

// superConnString connects as the bootstrap superuser, which exists before
// the regdr role does.
func (c *Cluster) superConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.Host, c.Port, db)
}

// Pid is the postmaster's process id from postmaster.pid.
func (c *Cluster) Pid() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("cluster %s: read postmaster.pid: %w", c.Name, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("cluster %s: postmaster.pid: bad pid line %q", c.Name, first)
	}
	return pid, nil
}

// Running reports whether the postmaster named in postmaster.pid is alive.
// A stale postmaster.pid (left by Kill or a crash) is not running.
func (c *Cluster) Running() bool {
	pid, err := c.Pid()
	if err != nil {
		return false
	}
	return processAlive(pid)
}
