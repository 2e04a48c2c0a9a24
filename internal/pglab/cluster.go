package pglab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// SiteConf is included at the end of postgresql.conf and holds what differs
// between the sites. pg_basebackup (and later pg_rewind) copy the whole data
// directory, so a new standby rewrites exactly this file and nothing else,
// and a rewound or reseeded cluster must keep its own copy (pgctl's
// Local.Preserve).
const SiteConf = "regdr-site.conf"

const siteConf = SiteConf

// commonConf is appended to postgresql.conf on the primary and reaches every
// standby through pg_basebackup.
const commonConf = `
# --- regdr lab settings (appended by pglab) ---
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
# A standby reports its replay position every second, so lag measured on
# the primary is never older than that.
wal_receiver_status_interval = 1s
# pg_rewind needs hint-bit changes in WAL to rejoin an old primary.
wal_log_hints = on
# ... and the old primary's WAL back to its last checkpoint before the
# fork. Crash recovery and the shutdown that follow a disaster checkpoint
# and recycle older segments; keeping some WAL lets the lab rewind instead
# of reseeding.
wal_keep_size = 256MB
# The lab measures data loss; it must not invent any by skipping fsync.
fsync = on
shared_buffers = 32MB
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%a '
include '` + siteConf + `'
`

// hbaConf trusts every loopback connection, replication included.
// LAB ONLY: no password, no TLS. A real site uses scram-sha-256 or
// certificates and names the peer site's address.
const hbaConf = `# regdr lab: trust on loopback only. Never use outside the lab.
local   all          all                 trust
host    all          all   127.0.0.0/8   trust
host    all          all   ::1/128       trust
host    replication  all   127.0.0.0/8   trust
host    replication  all   ::1/128       trust
`

func (c *Cluster) writeSiteConf(own owner) error {
	body := fmt.Sprintf(`# regdr lab: settings of site %s (rewritten when this cluster is built from another)
cluster_name = '%s'
listen_addresses = '%s'
port = %d
unix_socket_directories = '%s'
`, c.Name, c.Name, c.Host, c.Port, c.Dir)
	return writeOwned(filepath.Join(c.DataDir, siteConf), body, own)
}

// writeOwned replaces path with body, owned by the server owner and
// readable only by it.
func writeOwned(path, body string, own owner) error {
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if own.Cred != nil {
		if err := os.Chown(path, own.UID, own.GID); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}

func appendFile(path, body string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := io.WriteString(f, body); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l
}

// InitPrimary creates and starts a primary: initdb (trust auth, data
// checksums, superuser postgres), the lab configuration, role regdr, the
// registry database owned by it, and one physical replication slot per
// standby. On error nothing is left running.
func InitPrimary(ctx context.Context, opts Options) (_ *Cluster, err error) {
	log := logger(opts.Logger)
	if err := opts.fill(); err != nil {
		return nil, err
	}
	own, err := serverOwner()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(opts.Dir, own, log); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", opts.Name, err)
	}
	c := opts.cluster()
	if _, err := run(ctx, own, c.Dir, filepath.Join(c.BinDir, "initdb"),
		"-D", c.DataDir, "-U", "postgres", "--auth=trust", "--data-checksums",
		// C collation: registry names sort by bytes, like DNS tooling.
		"--no-locale", "--encoding=UTF8"); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	if err := appendFile(filepath.Join(c.DataDir, "postgresql.conf"), commonConf); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	if err := c.writeSiteConf(own); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	if err := writeOwned(filepath.Join(c.DataDir, "pg_hba.conf"), hbaConf, own); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.stopAfterFailure(log)
		}
	}()
	conn, err := pgx.Connect(ctx, c.superConnString("postgres"))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: connect as postgres: %w", c.Name, err)
	}
	defer closeConn(ctx, conn)
	stmts := []string{
		// Lab only: one all-powerful role keeps the lab simple. The
		// registry schema adds the unprivileged registry_app role.
		`CREATE ROLE regdr LOGIN SUPERUSER REPLICATION`,
		`CREATE DATABASE registry OWNER regdr`,
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("cluster %s: %s: %w", c.Name, s, err)
		}
	}
	for _, sb := range opts.Standbys {
		if _, err := conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1)`, SlotName(sb)); err != nil {
			return nil, fmt.Errorf("cluster %s: create replication slot %s: %w", c.Name, SlotName(sb), err)
		}
	}
	log.Info("primary ready", "cluster", c.Name, "host", c.Host, "port", c.Port, "dir", c.Dir)
	return c, nil
}

// CreateStandby builds a hot standby of primary with pg_basebackup through
// the slot SlotName(opts.Name), which InitPrimary must already have made,
// starts it and waits until it streams. On error nothing is left running.
func CreateStandby(ctx context.Context, primary *Cluster, opts Options) (_ *Cluster, err error) {
	log := logger(opts.Logger)
	if opts.BinDir == "" {
		opts.BinDir = primary.BinDir
	}
	if err := opts.fill(); err != nil {
		return nil, err
	}
	own, err := serverOwner()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(opts.Dir, own, log); err != nil {
		return nil, fmt.Errorf("standby %s: %w", opts.Name, err)
	}
	c := opts.cluster()
	// -R writes primary_conninfo (from this connection string, so with
	// application_name: the primary's pg_stat_replication then names the
	// site) and primary_slot_name; -X stream fetches the WAL written
	// during the copy; -c fast does not wait for a scheduled checkpoint.
	conninfo := fmt.Sprintf("host=%s port=%d user=regdr application_name=%s", primary.Host, primary.Port, c.Name)
	if _, err := run(ctx, own, c.Dir, filepath.Join(c.BinDir, "pg_basebackup"),
		"-D", c.DataDir, "-d", conninfo, "-R", "-X", "stream", "-S", SlotName(c.Name),
		"-c", "fast", "--no-password"); err != nil {
		return nil, fmt.Errorf("standby %s of %s: %w", c.Name, primary.Name, err)
	}
	if err := c.writeSiteConf(own); err != nil {
		return nil, fmt.Errorf("standby %s: %w", c.Name, err)
	}
	auto, err := os.ReadFile(filepath.Join(c.DataDir, "postgresql.auto.conf"))
	if err != nil {
		return nil, fmt.Errorf("standby %s: %w", c.Name, err)
	}
	if !strings.Contains(string(auto), "application_name="+c.Name) {
		return nil, fmt.Errorf("standby %s: postgresql.auto.conf from pg_basebackup -R has no application_name=%s in primary_conninfo", c.Name, c.Name)
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.stopAfterFailure(log)
		}
	}()
	if err := c.WaitStreaming(ctx); err != nil {
		return nil, err
	}
	log.Info("standby streaming", "cluster", c.Name, "primary", primary.Name, "host", c.Host, "port", c.Port)
	return c, nil
}

func (c *Cluster) stopAfterFailure(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx, "immediate"); err != nil {
		log.Error("stop half-built cluster", "cluster", c.Name, "err", err)
	}
}

// WaitStreaming waits until the cluster is a standby (pg_is_in_recovery)
// whose WAL receiver reports status 'streaming'.
func (c *Cluster) WaitStreaming(ctx context.Context) error {
	var last string
	for {
		inRecovery, status, err := c.recoveryState(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case inRecovery && status == "streaming":
			return nil
		default:
			last = fmt.Sprintf("in recovery %v, wal receiver %q", inRecovery, status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("standby %s: not streaming (last seen: %s): %w", c.Name, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) recoveryState(ctx context.Context) (bool, string, error) {
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return false, "", err
	}
	defer closeConn(ctx, conn)
	var inRecovery bool
	var status string
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), '')`).Scan(&inRecovery, &status)
	return inRecovery, status, err
}

// closeConn says goodbye to the server even if ctx is done, but does not
// wait long for one that stopped answering.
func closeConn(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = conn.Close(ctx) // nothing to do about a failed goodbye
}

// Start starts the cluster and waits (pg_ctl -w, bounded by ctx) until it
// accepts connections. A cluster that is already running is left alone.
func (c *Cluster) Start(ctx context.Context) error {
	if c.Running() {
		return nil
	}
	own, err := serverOwner()
	if err != nil {
		return err
	}
	if err := c.clearStaleLocks(); err != nil {
		return err
	}
	for {
		_, err := run(ctx, own, c.dir(), filepath.Join(c.BinDir, "pg_ctl"),
			"start", "-D", c.DataDir, "-l", c.LogFile, "-w", "-t", waitSeconds(ctx))
		if err == nil {
			return nil
		}
		// After Kill the postmaster is gone at once but its children
		// take a moment to notice and detach from shared memory; until
		// then the new postmaster refuses to start.
		if !c.sharedMemoryBusy() || ctx.Err() != nil {
			return fmt.Errorf("start cluster %s: %w (log: %s)", c.Name, err, c.LogFile)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start cluster %s: %w (log: %s)", c.Name, err, c.LogFile)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// clearStaleLocks removes the lock files of a postmaster that is gone but
// not reaped. PostgreSQL takes a lock file whose pid still answers kill(0)
// as a live postmaster, and a killed postmaster stays a zombie wherever pid
// 1 does not reap orphans (containers), so Start after Kill would fail
// forever. A zombie holds no files, sockets or shared memory, so its locks
// are safe to remove; a live pid's locks are never touched.
func (c *Cluster) clearStaleLocks() error {
	locks := []string{
		filepath.Join(c.DataDir, "postmaster.pid"),
		filepath.Join(c.dir(), fmt.Sprintf(".s.PGSQL.%d.lock", c.Port)),
	}
	for _, lock := range locks {
		b, err := os.ReadFile(lock)
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if err := os.Remove(lock); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("start cluster %s: remove stale lock %s of dead postmaster %d: %w", c.Name, lock, pid, err)
		}
	}
	return nil
}

// sharedMemoryBusy reports whether the last lines of the log say the
// previous postmaster's children still hold shared memory.
func (c *Cluster) sharedMemoryBusy() bool {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return false
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return strings.Contains(string(b), "pre-existing shared memory block")
}

// Stop shuts the cluster down with pg_ctl -m mode ("fast" rolls back open
// transactions and checkpoints; "immediate" is a crash without the
// checkpoint) and waits until the postmaster process is gone. Stopping a
// cluster that is not running succeeds.
func (c *Cluster) Stop(ctx context.Context, mode string) error {
	if mode != "fast" && mode != "immediate" {
		return fmt.Errorf("stop cluster %s: mode %q: want fast or immediate", c.Name, mode)
	}
	pid, err := c.Pid()
	if err != nil || !processAlive(pid) {
		return nil
	}
	own, err := serverOwner()
	if err != nil {
		return err
	}
	if _, err := run(ctx, own, c.dir(), filepath.Join(c.BinDir, "pg_ctl"),
		"stop", "-D", c.DataDir, "-m", mode, "-w", "-t", waitSeconds(ctx)); err != nil {
		if !processAlive(pid) {
			return nil // it went away on its own meanwhile
		}
		return fmt.Errorf("stop cluster %s (%s): %w", c.Name, mode, err)
	}
	// pg_ctl returns once postmaster.pid is gone, which the postmaster
	// removes just before it exits.
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop cluster %s: postmaster %d still running: %w", c.Name, pid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// Kill sends SIGKILL to the postmaster, as a crash or a power cut would;
// postmaster.pid stays behind and the children exit on their own when they
// notice the postmaster is gone. Start works afterwards.
func (c *Cluster) Kill() error {
	pid, err := c.Pid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill cluster %s postmaster %d: %w", c.Name, pid, err)
	}
	return nil
}
