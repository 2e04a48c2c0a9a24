package pgctl

import (
	"bufio"
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

// More expected outcomes.
var (
	// ErrRunning: the operation needs the server stopped.
	ErrRunning = errors.New("server is running")
	// ErrPrimaryRunning: Reseed refuses to replace a running primary.
	ErrPrimaryRunning = errors.New("server is a running primary")
	// ErrNotCleanShutdown: pg_control does not say "shut down", so there
	// is no shutdown checkpoint to wait for.
	ErrNotCleanShutdown = errors.New("server was not shut down cleanly")
	// ErrNoCommonTimeline: the new primary's timeline history does not
	// contain the old server's timeline: they share no history that
	// pg_rewind could use; reseed instead.
	ErrNoCommonTimeline = errors.New("no common timeline")
	// ErrNeedReseed: pg_rewind cannot rejoin the server (its WAL back to
	// the last checkpoint before the fork is gone); Reseed it.
	ErrNeedReseed = errors.New("pg_rewind impossible, reseed")
)

// Local controls a site's own PostgreSQL server through its data
// directory: the agent of the site runs these, as root or as the server's
// user. Every binary runs as the owner of DataDir.
type Local struct {
	// Name is the site, for errors and logs.
	Name string
	// DataDir is PGDATA.
	DataDir string
	// BinDir holds pg_ctl, postgres, pg_controldata, pg_rewind and
	// pg_basebackup of the server's major version.
	BinDir string
	// LogFile receives the server log (pg_ctl -l); default
	// <DataDir>.log next to the data directory.
	LogFile string
	// Preserve names files in DataDir that belong to this site rather
	// than to the cluster (its port, addresses, socket directory).
	// pg_rewind and pg_basebackup copy the whole data directory from the
	// other site; Rewind and Reseed put these files back afterwards. The
	// lab's is pglab.SiteConf.
	Preserve []string
	// Log receives progress; nil discards.
	Log *slog.Logger
}

func (l *Local) log() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l.Log
}

func (l *Local) logFile() string {
	if l.LogFile != "" {
		return l.LogFile
	}
	return filepath.Clean(l.DataDir) + ".log"
}

func (l *Local) name() string {
	if l.Name != "" {
		return l.Name
	}
	return l.DataDir
}

func (l *Local) bin(name string) string { return filepath.Join(l.BinDir, name) }

// pidFile reads postmaster.pid: the pid, and the unix socket lock file it
// names (line 4 is the port, line 5 the first socket directory).
func (l *Local) pidFile() (pid int, sockLock string, err error) {
	b, err := os.ReadFile(filepath.Join(l.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, "", err
	}
	lines := strings.Split(string(b), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, "", fmt.Errorf("postmaster.pid of %s: bad pid line %q", l.name(), lines[0])
	}
	if len(lines) > 4 && strings.TrimSpace(lines[4]) != "" {
		sockLock = filepath.Join(strings.TrimSpace(lines[4]), ".s.PGSQL."+strings.TrimSpace(lines[3])+".lock")
	}
	return pid, sockLock, nil
}

// Running reports whether the postmaster named in postmaster.pid is
// alive. A stale postmaster.pid (after a crash or kill -9) is not running.
func (l *Local) Running() bool {
	pid, _, err := l.pidFile()
	return err == nil && processAlive(pid)
}

// clearStaleLocks removes the lock files of a postmaster that is gone: a
// killed postmaster may stay a zombie where pid 1 does not reap, and
// PostgreSQL takes a lock whose pid answers kill(0) as a live server. A
// live pid's locks are never touched.
func (l *Local) clearStaleLocks() error {
	pid, sock, err := l.pidFile()
	if err != nil || processAlive(pid) {
		return nil
	}
	for _, f := range []string{sock, filepath.Join(l.DataDir, "postmaster.pid")} {
		if f == "" {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: remove stale lock %s of dead postmaster %d: %w", l.name(), f, pid, err)
		}
	}
	return nil
}

// sharedMemoryBusy reports whether out says the previous postmaster's
// children still hold shared memory (they exit shortly after a kill -9 of
// the postmaster).
func sharedMemoryBusy(out string) bool {
	return strings.Contains(out, "pre-existing shared memory block")
}

func (l *Local) logTail() string {
	b, err := os.ReadFile(l.logFile())
	if err != nil {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}

// Start starts the server with pg_ctl and waits until it accepts
// connections (bounded by ctx). A running server is left alone.
func (l *Local) Start(ctx context.Context) error {
	return l.start(ctx, "")
}

func (l *Local) start(ctx context.Context, opts string) error {
	if l.Running() {
		return nil
	}
	own, err := ownerOf(l.DataDir)
	if err != nil {
		return fmt.Errorf("start %s: %w", l.name(), err)
	}
	if err := l.clearStaleLocks(); err != nil {
		return fmt.Errorf("start %s: %w", l.name(), err)
	}
	args := []string{"start", "-D", l.DataDir, "-l", l.logFile(), "-w", "-t", pgCtlWait(ctx)}
	if opts != "" {
		args = append(args, "-o", opts)
	}
	for {
		_, err := run(ctx, own, l.DataDir, l.bin("pg_ctl"), args...)
		if err == nil {
			l.log().Info("postgres started", "site", l.name(), "data_dir", l.DataDir)
			return nil
		}
		if !sharedMemoryBusy(l.logTail()) || ctx.Err() != nil {
			return fmt.Errorf("start %s: %w (log: %s)", l.name(), err, l.logFile())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start %s: %w (log: %s)", l.name(), err, l.logFile())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop shuts the server down (mode "fast": roll back sessions, write the
// shutdown checkpoint, which a connected standby receives before the
// walsender exits; "immediate": a crash, no checkpoint) and waits until the
// postmaster is gone. Stopping a stopped server succeeds.
//
// It signals the postmaster itself (SIGINT for fast, SIGQUIT for
// immediate, as pg_ctl does) and watches for its exit every 5 ms: pg_ctl's
// -w polls only every 100 ms, which a switchover would pay as write
// downtime.
func (l *Local) Stop(ctx context.Context, mode string) error {
	sig := map[string]syscall.Signal{"fast": syscall.SIGINT, "immediate": syscall.SIGQUIT}[mode]
	if sig == 0 {
		return fmt.Errorf("stop %s: mode %q: want fast or immediate", l.name(), mode)
	}
	pid, _, err := l.pidFile()
	if err != nil || !processAlive(pid) {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if !errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("stop %s (%s): signal postmaster %d: %w", l.name(), mode, pid, err)
		}
		// Not ours to signal (neither root nor the owner): pg_ctl as
		// the owner cannot be either, but says so better.
		own, oerr := ownerOf(l.DataDir)
		if oerr != nil {
			return fmt.Errorf("stop %s: %w", l.name(), oerr)
		}
		if _, err := run(ctx, own, l.DataDir, l.bin("pg_ctl"), "stop", "-D", l.DataDir, "-m", mode, "-w", "-t", pgCtlWait(ctx)); err != nil && processAlive(pid) {
			return fmt.Errorf("stop %s (%s): %w", l.name(), mode, err)
		}
	}
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop %s (%s): postmaster %d still running: %w", l.name(), mode, pid, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	l.log().Info("postgres stopped", "site", l.name(), "mode", mode)
	return nil
}

// ControlData is pg_controldata's output, keyed by its labels ("Database
// cluster state", "Latest checkpoint location", ...).
type ControlData map[string]string

// ControlData runs pg_controldata on DataDir. The values are what was last
// written to pg_control: exact on a stopped server, possibly behind on a
// running one.
func (l *Local) ControlData(ctx context.Context) (ControlData, error) {
	own, err := ownerOf(l.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pg_controldata of %s: %w", l.name(), err)
	}
	out, err := run(ctx, own, l.DataDir, l.bin("pg_controldata"), "-D", l.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pg_controldata of %s: %w", l.name(), err)
	}
	return parseControlData(out), nil
}

func parseControlData(out string) ControlData {
	cd := ControlData{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			cd[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return cd
}

// State is "Database cluster state": "shut down", "shut down in
// recovery", "in production", "in archive recovery", ...
func (cd ControlData) State() string { return cd["Database cluster state"] }

// Checkpoint is "Latest checkpoint location": where the last checkpoint
// record starts.
func (cd ControlData) Checkpoint() (LSN, error) { return ParseLSN(cd["Latest checkpoint location"]) }

// MinRecoveryEnd is "Minimum recovery ending location" (zero unless the
// server was a standby or is being rewound).
func (cd ControlData) MinRecoveryEnd() (LSN, error) {
	return ParseLSN(cd["Minimum recovery ending location"])
}

// Timeline is "Latest checkpoint's TimeLineID".
func (cd ControlData) Timeline() (uint32, error) {
	v, err := strconv.ParseUint(cd["Latest checkpoint's TimeLineID"], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("timeline %q: %w", cd["Latest checkpoint's TimeLineID"], err)
	}
	return uint32(v), nil
}

// ShutdownCheckpointLSN is where the shutdown checkpoint of a cleanly
// stopped server starts: the last record it wrote. A switchover waits
// until the standby has replayed it: WaitReplayed(standby, lsn+1).
func (l *Local) ShutdownCheckpointLSN(ctx context.Context) (LSN, error) {
	if l.Running() {
		return 0, fmt.Errorf("shutdown checkpoint of %s: %w", l.name(), ErrRunning)
	}
	cd, err := l.ControlData(ctx)
	if err != nil {
		return 0, err
	}
	if cd.State() != "shut down" {
		return 0, fmt.Errorf("shutdown checkpoint of %s: state %q: %w", l.name(), cd.State(), ErrNotCleanShutdown)
	}
	lsn, err := cd.Checkpoint()
	if err != nil {
		return 0, fmt.Errorf("shutdown checkpoint of %s: %w", l.name(), err)
	}
	return lsn, nil
}

// Timeline is the timeline of the server's latest checkpoint (exact when
// it is stopped).
func (l *Local) Timeline(ctx context.Context) (uint32, error) {
	cd, err := l.ControlData(ctx)
	if err != nil {
		return 0, err
	}
	tli, err := cd.Timeline()
	if err != nil {
		return 0, fmt.Errorf("timeline of %s: %w", l.name(), err)
	}
	return tli, nil
}

// EnsureCleanShutdown makes a stopped server's data directory cleanly shut
// down, as pg_rewind needs: after a crash it runs the server once in
// single-user mode, which completes crash recovery on the server's own
// timeline and writes a shutdown checkpoint (what pg_rewind itself does
// since PostgreSQL 13). This extends the old WAL past its crash point by
// that checkpoint, so afterwards the server is diverged from any standby
// promoted at or before its end of WAL. A cleanly stopped server is left
// alone.
func (l *Local) EnsureCleanShutdown(ctx context.Context) error {
	if l.Running() {
		return fmt.Errorf("clean shutdown of %s: %w", l.name(), ErrRunning)
	}
	cd, err := l.ControlData(ctx)
	if err != nil {
		return err
	}
	if s := cd.State(); s == "shut down" || s == "shut down in recovery" {
		return nil
	}
	own, err := ownerOf(l.DataDir)
	if err != nil {
		return fmt.Errorf("clean shutdown of %s: %w", l.name(), err)
	}
	if err := l.clearStaleLocks(); err != nil {
		return fmt.Errorf("clean shutdown of %s: %w", l.name(), err)
	}
	l.log().Info("single-user crash recovery", "site", l.name(), "state", cd.State())
	for {
		// stdin is /dev/null: the single-user backend exits at once
		// after recovery, with a shutdown checkpoint. Unlike pg_rewind
		// (which syncs everything afterwards) no -F: this may run on
		// its own, and a "shut down" pg_control must not be written
		// ahead of the pages it vouches for.
		out, err := run(ctx, own, l.DataDir, l.bin("postgres"), "--single", "-D", l.DataDir, "template1")
		if err == nil {
			break
		}
		if !sharedMemoryBusy(out) || ctx.Err() != nil {
			return fmt.Errorf("clean shutdown of %s: %w", l.name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clean shutdown of %s: %w", l.name(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	cd, err = l.ControlData(ctx)
	if err != nil {
		return err
	}
	if cd.State() != "shut down" {
		return fmt.Errorf("clean shutdown of %s: after single-user recovery, state %q: %w", l.name(), cd.State(), ErrNotCleanShutdown)
	}
	return nil
}

// ConfigureStandby makes the server a standby of primaryConnInfo through
// replication slot slot at its next start: standby.signal, and
// primary_conninfo and primary_slot_name in postgresql.auto.conf (replacing
// earlier values, e.g. those pg_rewind or pg_basebackup copied from the
// primary), owned by the server's user. A running standby takes new values
// on reload (PostgreSQL 13+). Idempotent.
func (l *Local) ConfigureStandby(primaryConnInfo, slot string) error {
	own, err := ownerOf(l.DataDir)
	if err != nil {
		return fmt.Errorf("configure %s as standby: %w", l.name(), err)
	}
	set := map[string]string{"primary_conninfo": primaryConnInfo, "primary_slot_name": slot}
	if err := editAutoConf(filepath.Join(l.DataDir, "postgresql.auto.conf"), set, own); err != nil {
		return fmt.Errorf("configure %s as standby: %w", l.name(), err)
	}
	sig := filepath.Join(l.DataDir, "standby.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return fmt.Errorf("configure %s as standby: %w", l.name(), err)
	}
	if err := own.Chown(sig); err != nil {
		return fmt.Errorf("configure %s as standby: %w", l.name(), err)
	}
	return nil
}

// editAutoConf replaces the settings named in set (empty value: removes
// the setting) in postgresql.auto.conf, atomically.
func editAutoConf(path string, set map[string]string, own owner) error {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		k, _, ok := strings.Cut(line, "=")
		if _, replaced := set[strings.TrimSpace(k)]; ok && replaced && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if line != "" || len(out) > 0 {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		out = append(out, "# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command.")
	}
	for _, k := range []string{"primary_conninfo", "primary_slot_name"} {
		if v, ok := set[k]; ok && v != "" {
			out = append(out, fmt.Sprintf("%s = '%s'", k, quoteConf(v)))
		}
	}
	return writeFileAtomic(path, []byte(strings.Join(out, "\n")+"\n"), 0o600, own)
}

// quoteConf escapes a value for a single-quoted postgresql.conf string.
func quoteConf(v string) string {
	return strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", "''")
}

func writeFileAtomic(path string, body []byte, mode os.FileMode, own owner) error {
	tmp := path + ".regdr-tmp"
	if err := os.WriteFile(tmp, body, mode); err != nil {
		return err
	}
	if err := own.Chown(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// preserved holds this site's own files across a copy from the other site.
type preserved map[string][]byte

func (l *Local) savePreserved() (preserved, error) {
	p := preserved{}
	for _, f := range l.Preserve {
		b, err := os.ReadFile(filepath.Join(l.DataDir, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keep %s of %s: %w", f, l.name(), err)
		}
		p[f] = b
	}
	return p, nil
}

func (p preserved) restore(dataDir string, own owner) error {
	for f, b := range p {
		if err := writeFileAtomic(filepath.Join(dataDir, f), b, 0o600, own); err != nil {
			return fmt.Errorf("restore %s: %w", f, err)
		}
	}
	return nil
}

// Rewind makes a stopped old primary a copy of the server at
// sourceConnString (the new primary) from their fork on, with pg_rewind
// --source-server, and leaves it configured as that server's standby
// (pg_rewind -R writes standby.signal and primary_conninfo; call
// ConfigureStandby afterwards to set the slot and the conninfo the site
// uses). A crashed server is first brought to a clean shutdown
// (EnsureCleanShutdown). The Preserve files are put back. A server that has
// not diverged is left as it is by pg_rewind ("no rewind required"), so
// calling Rewind when unsure is safe; it does not start the server.
//
// A just-promoted source's pg_control may still name its old timeline
// (promotion requests a checkpoint but does not wait), and pg_rewind would
// then wrongly find no divergence, so Rewind runs CHECKPOINT on the source
// first.
func (l *Local) Rewind(ctx context.Context, sourceConnString string) error {
	if l.Running() {
		return fmt.Errorf("rewind %s: %w", l.name(), ErrRunning)
	}
	if err := checkpoint(ctx, sourceConnString); err != nil {
		return fmt.Errorf("rewind %s: %w", l.name(), err)
	}
	if err := l.EnsureCleanShutdown(ctx); err != nil {
		return fmt.Errorf("rewind %s: %w", l.name(), err)
	}
	own, err := ownerOf(l.DataDir)
	if err != nil {
		return fmt.Errorf("rewind %s: %w", l.name(), err)
	}
	keep, err := l.savePreserved()
	if err != nil {
		return fmt.Errorf("rewind %s: %w", l.name(), err)
	}
	out, err := run(ctx, own, l.DataDir, l.bin("pg_rewind"), "--target-pgdata="+l.DataDir,
		"--source-server="+sourceConnString, "--write-recovery-conf")
	if err != nil {
		// pg_rewind has changed nothing yet when it cannot read the
		// target's WAL back to the checkpoint before the fork.
		if strings.Contains(out, "could not find previous WAL record") || strings.Contains(out, "could not open file") && strings.Contains(out, "pg_wal/") {
			return fmt.Errorf("rewind %s: %w: %w (keep more WAL: wal_keep_size, or archive and restore_command)", l.name(), ErrNeedReseed, err)
		}
		return fmt.Errorf("rewind %s: %w", l.name(), err)
	}
	if err := keep.restore(l.DataDir, own); err != nil {
		return fmt.Errorf("rewind %s: %w", l.name(), err)
	}
	// pg_rewind writes no recovery configuration when no rewind was
	// required; the server must still never start as a primary again.
	if !l.isStandbyDir() {
		sig := filepath.Join(l.DataDir, "standby.signal")
		if err := os.WriteFile(sig, nil, 0o600); err != nil {
			return fmt.Errorf("rewind %s: %w", l.name(), err)
		}
		if err := own.Chown(sig); err != nil {
			return fmt.Errorf("rewind %s: %w", l.name(), err)
		}
	}
	l.log().Info("pg_rewind done", "site", l.name(), "output", strings.TrimSpace(out))
	return nil
}

func checkpoint(ctx context.Context, connString string) error {
	c, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connect to source: %w", err)
	}
	defer closeConn(ctx, c)
	if _, err := c.Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("checkpoint on %s: %w", where(c), err)
	}
	return nil
}

// isStandbyDir reports whether the data directory starts in recovery.
func (l *Local) isStandbyDir() bool {
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		if _, err := os.Stat(filepath.Join(l.DataDir, f)); err == nil {
			return true
		}
	}
	return false
}

// Reseed rebuilds the server as a fresh standby of primaryConnInfo: it
// refuses a running primary (ErrPrimaryRunning: that is the active site's
// database), stops a running standby, copies the primary with
// pg_basebackup -R -S slot (the slot must exist: EnsureSlot) into
// <DataDir>.reseed, puts the Preserve files back, sets the standby
// configuration, swaps the new directory in for the old one, removes the
// old one and starts the server. The data directory is never half-copied:
// the copy happens beside it and the swap is two renames; a Reseed
// interrupted between them finds the finished copy and completes the swap.
func (l *Local) Reseed(ctx context.Context, primaryConnInfo, slot string) error {
	dir := filepath.Clean(l.DataDir)
	next, prev, done := dir+".reseed", dir+".old", dir+".reseed-done"
	parentOwn, err := ownerOf(filepath.Dir(dir))
	if err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(done); err == nil {
			return l.finishReseed(ctx, dir, next, prev, done)
		}
	}
	if l.Running() {
		if !l.isStandbyDir() {
			return fmt.Errorf("reseed %s: %w: refusing to replace it", l.name(), ErrPrimaryRunning)
		}
		if err := l.Stop(ctx, "fast"); err != nil {
			return fmt.Errorf("reseed %s: %w", l.name(), err)
		}
	}
	own, err := ownerOf(dir)
	if err != nil {
		own = parentOwn
	}
	keep, err := l.savePreserved()
	if err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	for _, p := range []string{next, done} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("reseed %s: remove leftover %s: %w", l.name(), p, err)
		}
	}
	if err := os.Mkdir(next, 0o700); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	if err := own.Chown(next); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	l.log().Info("pg_basebackup", "site", l.name(), "into", next, "slot", slot)
	if _, err := run(ctx, own, next, l.bin("pg_basebackup"), "-D", next, "-d", primaryConnInfo,
		"-R", "-X", "stream", "-S", slot, "-c", "fast", "--no-password"); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	if err := keep.restore(next, own); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	copyCfg := &Local{Name: l.Name, DataDir: next}
	if err := copyCfg.ConfigureStandby(primaryConnInfo, slot); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	if err := syncDir(next); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	// The marker says the copy is complete: from here on an interrupted
	// Reseed finishes the swap instead of starting over.
	if err := os.WriteFile(done, nil, 0o600); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	return l.finishReseed(ctx, dir, next, prev, done)
}

func (l *Local) finishReseed(ctx context.Context, dir, next, prev, done string) error {
	if _, err := os.Stat(dir); err == nil {
		if err := os.RemoveAll(prev); err != nil {
			return fmt.Errorf("reseed %s: %w", l.name(), err)
		}
		if err := os.Rename(dir, prev); err != nil {
			return fmt.Errorf("reseed %s: move old data directory aside: %w", l.name(), err)
		}
	}
	if err := os.Rename(next, dir); err != nil {
		return fmt.Errorf("reseed %s: move new data directory in: %w", l.name(), err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("reseed %s: %w", l.name(), err)
	}
	for _, p := range []string{done, prev} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("reseed %s: remove %s: %w", l.name(), p, err)
		}
	}
	return l.Start(ctx)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Rejoin makes the old primary a streaming standby of the new primary
// (newConn; sourceConnString reaches it for pg_rewind, primaryConnInfo is
// what this server streams from, through slot, which must exist there:
// EnsureSlot). A running server is left alone if it already is a standby (ConfigureStandby is
// applied and takes effect on reload), and refused if it runs as a
// primary — stopping a primary is the executor's decision (Fence, Stop).
// Otherwise: Diverged; if diverged, Rewind, falling back to Reseed when
// pg_rewind is impossible; ConfigureStandby; Start. Salvage must come
// first: Rewind discards what the old primary had beyond the fork. It
// reports what it did ("already standby", "followed", "rewound",
// "reseeded").
func (l *Local) Rejoin(ctx context.Context, newConn *pgx.Conn, sourceConnString, primaryConnInfo, slot string) (string, error) {
	if l.Running() {
		if !l.isStandbyDir() {
			return "", fmt.Errorf("rejoin %s: %w: fence and stop it first", l.name(), ErrPrimaryRunning)
		}
		if err := l.ConfigureStandby(primaryConnInfo, slot); err != nil {
			return "", fmt.Errorf("rejoin %s: %w", l.name(), err)
		}
		return "already standby", nil
	}
	did := "followed"
	if !l.isStandbyDir() {
		diverged, _, err := Diverged(ctx, l, newConn)
		if err != nil && !errors.Is(err, ErrNoCommonTimeline) {
			return "", fmt.Errorf("rejoin %s: %w", l.name(), err)
		}
		switch {
		case errors.Is(err, ErrNoCommonTimeline):
			did = "reseeded"
		case diverged:
			did = "rewound"
			if err := l.Rewind(ctx, sourceConnString); errors.Is(err, ErrNeedReseed) {
				did = "reseeded"
			} else if err != nil {
				return "", fmt.Errorf("rejoin %s: %w", l.name(), err)
			}
		}
	}
	if did == "reseeded" {
		if err := l.Reseed(ctx, primaryConnInfo, slot); err != nil {
			return "", fmt.Errorf("rejoin %s: %w", l.name(), err)
		}
		return did, nil
	}
	if err := l.ConfigureStandby(primaryConnInfo, slot); err != nil {
		return "", fmt.Errorf("rejoin %s: %w", l.name(), err)
	}
	if err := l.Start(ctx); err != nil {
		return "", fmt.Errorf("rejoin %s: %w", l.name(), err)
	}
	return did, nil
}
