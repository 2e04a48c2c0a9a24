package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// scratch is the throw-away PostgreSQL a restore runs in: a data
// directory under the scratch dir, a free loopback port, its own
// pg_hba.conf (trust on 127.0.0.1 only, whatever the backup's says) and no
// unix socket (paths under a test's temp dir can exceed the socket path
// limit, and nothing but us should connect).
type scratch struct {
	own    owner
	binDir string
	root   string
	data   string
	log    string
	port   int
}

func newScratch(own owner, binDir, parent, name string) (*scratch, error) {
	root := filepath.Join(parent, name)
	if _, err := os.Stat(root); err == nil {
		return nil, fmt.Errorf("scratch directory %s already exists", root)
	}
	s := &scratch{own: own, binDir: binDir, root: root, data: filepath.Join(root, "data"), log: filepath.Join(root, "server.log")}
	if err := own.mkdirOwned(s.data); err != nil {
		return nil, err
	}
	if err := own.mkdirOwned(root); err != nil {
		return nil, err
	}
	if err := own.writeOwned(s.log, nil); err != nil {
		return nil, err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	s.port = port
	return s, nil
}

// ConnString reaches database db of the scratch server as the bootstrap
// superuser postgres.
func (s *scratch) connString(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable connect_timeout=5", s.port, db)
}

const scratchHBA = `# regdr backup verify: scratch instance, loopback trust only.
host all all 127.0.0.1/32 trust
`

// configure appends the scratch settings to postgresql.auto.conf, which
// is read last and so overrides the backup's own configuration.
// recovery holds the restore_command/target lines (empty when pgBackRest
// wrote them already).
func (s *scratch) configure(recovery string) error {
	hba := filepath.Join(s.root, "pg_hba.conf")
	if err := s.own.writeOwned(hba, []byte(scratchHBA)); err != nil {
		return err
	}
	body := fmt.Sprintf(`
# --- regdr backup verify: scratch instance settings ---
port = %d
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
hba_file = '%s'
cluster_name = 'regdr-verify'
archive_mode = off
primary_conninfo = ''
primary_slot_name = ''
hot_standby = on
logging_collector = off
log_destination = 'stderr'
%s`, s.port, hba, recovery)
	auto := filepath.Join(s.data, "postgresql.auto.conf")
	old, err := os.ReadFile(auto)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", auto, err)
	}
	if err := s.own.writeOwned(auto, append(old, body...)); err != nil {
		return err
	}
	return s.own.writeOwned(filepath.Join(s.data, "recovery.signal"), nil)
}

// start starts the server; pg_ctl -w returns once it accepts (read-only)
// connections, which during recovery is the consistent point. A port
// taken between choosing it and binding it (parallel tests, another
// restore) gets one retry on a new port.
func (s *scratch) start(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		_, err := s.own.run(ctx, s.root, filepath.Join(s.binDir, "pg_ctl"),
			"start", "-D", s.data, "-l", s.log, "-w", "-t", waitSeconds(ctx))
		if err == nil {
			return nil
		}
		if attempt > 0 || !strings.Contains(s.logText(), "could not bind") {
			return fmt.Errorf("start scratch server: %w%s", err, s.fatalLines())
		}
		port, perr := freePort("127.0.0.1")
		if perr != nil {
			return perr
		}
		s.port = port
		auto := filepath.Join(s.data, "postgresql.auto.conf")
		old, rerr := os.ReadFile(auto)
		if rerr != nil {
			return fmt.Errorf("start scratch server: %w", rerr)
		}
		if werr := s.own.writeOwned(auto, fmt.Appendf(old, "port = %d\n", port)); werr != nil {
			return werr
		}
	}
}

func waitSeconds(ctx context.Context) string {
	d, ok := ctx.Deadline()
	if !ok {
		return "300"
	}
	return strconv.Itoa(max(1, int(time.Until(d).Seconds())))
}

// pid is the postmaster's pid from postmaster.pid, 0 if none.
func (s *scratch) pid() int {
	b, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	return pid
}

// waitOpen waits until recovery has ended (promoted: not in recovery),
// or the server died trying.
func (s *scratch) waitOpen(ctx context.Context) error {
	var last string
	for {
		if pid := s.pid(); pid == 0 || !processAlive(pid) {
			return fmt.Errorf("scratch server exited during recovery%s", s.fatalLines())
		}
		inRecovery, err := s.inRecovery(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case !inRecovery:
			return nil
		default:
			last = "still in recovery"
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scratch server not open (last: %s): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *scratch) inRecovery(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, s.connString("postgres"))
	if err != nil {
		return false, err
	}
	defer closeConn(ctx, c)
	var r bool
	err = c.QueryRow(cctx, `SELECT pg_is_in_recovery()`).Scan(&r)
	return r, err
}

// fatalLines returns the FATAL/PANIC lines of the server log, for errors.
func (s *scratch) fatalLines() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return ""
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, "FATAL:") || strings.Contains(line, "PANIC:") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	if len(out) == 0 {
		return ""
	}
	if len(out) > 4 {
		out = out[len(out)-4:]
	}
	return "; server log: " + strings.Join(out, " | ")
}

func (s *scratch) logText() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// teardown stops the server however it can and removes the scratch
// directory. It is called on every path out of Verify, with a context not
// tied to the caller's (a cancelled verify must still clean up).
func (s *scratch) teardown(ctx context.Context) error {
	var errs []error
	if pid := s.pid(); pid != 0 && processAlive(pid) {
		if _, err := s.own.run(ctx, s.root, filepath.Join(s.binDir, "pg_ctl"),
			"stop", "-D", s.data, "-m", "immediate", "-w", "-t", waitSeconds(ctx)); err != nil {
			errs = append(errs, err)
		}
		// pg_ctl failed or the postmaster lingers: kill it and its
		// children (they exit when the postmaster dies).
		if processAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for processAlive(pid) {
			select {
			case <-ctx.Done():
				return errors.Join(append(errs, fmt.Errorf("scratch postmaster %d still running: %w", pid, ctx.Err()))...)
			case <-time.After(20 * time.Millisecond):
			}
		}
		errs = nil // stopped after all: pg_ctl's complaint no longer matters
	}
	if err := os.RemoveAll(s.root); err != nil {
		errs = append(errs, fmt.Errorf("remove scratch directory: %w", err))
	}
	return errors.Join(errs...)
}
