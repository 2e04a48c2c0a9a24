package pglab_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
)

func TestPrimaryAndStandby(t *testing.T) {
	primary := pglabtest.Primary(t, "osaka")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The standby on another loopback address, as the lab gives each
	// site its own.
	standby, err := pglab.CreateStandby(ctx, primary, pglab.Options{
		Name:   "osaka",
		Dir:    filepath.Join(t.TempDir(), "osaka"),
		Host:   "127.0.0.2",
		Logger: pglabtest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := standby.Stop(ctx, "immediate"); err != nil {
			t.Error(err)
		}
	})
	if standby.Host != "127.0.0.2" || standby.Port == primary.Port && standby.Host == primary.Host {
		t.Fatalf("standby address %s:%d", standby.Host, standby.Port)
	}

	pc := pglabtest.Conn(t, primary, "registry")
	sc := pglabtest.Conn(t, standby, "registry")

	// The primary names the standby by site and streams through its slot.
	var app, state, slot string
	var active bool
	err = pc.QueryRow(ctx, `SELECT r.application_name, r.state, s.slot_name, s.active
		FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid`).Scan(&app, &state, &slot, &active)
	if err != nil {
		t.Fatalf("replication state on primary: %v", err)
	}
	if app != "osaka" || state != "streaming" || slot != pglab.SlotName("osaka") || !active {
		t.Fatalf("primary sees application_name %q state %q slot %q active %v; want osaka streaming regdr_osaka true", app, state, slot, active)
	}

	var inRecovery bool
	if err := sc.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("standby pg_is_in_recovery = %v, %v; want true", inRecovery, err)
	}
	var owner string
	if err := sc.QueryRow(ctx, `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'registry'`).Scan(&owner); err != nil || owner != "regdr" {
		t.Fatalf("registry database owner = %q, %v; want regdr", owner, err)
	}

	// A row committed on the primary shows up on the standby.
	if _, err := pc.Exec(ctx, `CREATE TABLE probe (v text); INSERT INTO probe VALUES ('written in tokyo')`); err != nil {
		t.Fatal(err)
	}
	var got string
	for {
		err := sc.QueryRow(ctx, `SELECT v FROM probe`).Scan(&got)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("row never reached the standby: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got != "written in tokyo" {
		t.Fatalf("standby row = %q", got)
	}

	// The standby refuses writes.
	_, err = sc.Exec(ctx, `INSERT INTO probe VALUES ('written in osaka')`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("insert on standby: err = %v, want SQLSTATE 25006 read_only_sql_transaction", err)
	}

	// Socket and log live in the cluster's own directory.
	if _, err := os.Stat(filepath.Join(standby.Dir, ".s.PGSQL."+strconv.Itoa(standby.Port))); err != nil {
		t.Errorf("standby unix socket: %v", err)
	}
	if b, err := os.ReadFile(standby.LogFile); err != nil || !strings.Contains(string(b), "started streaming WAL") {
		t.Errorf("standby log %s does not record streaming (err %v)", standby.LogFile, err)
	}
}

func TestStopKillStart(t *testing.T) {
	c := pglabtest.Primary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	steps := []struct {
		name string
		down func() error
	}{
		{"stop fast", func() error { return c.Stop(ctx, "fast") }},
		{"stop immediate", func() error { return c.Stop(ctx, "immediate") }},
		{"kill", c.Kill},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if !c.Running() {
				t.Fatal("cluster not running before the step")
			}
			pid, err := c.Pid()
			if err != nil {
				t.Fatal(err)
			}
			if err := st.down(); err != nil {
				t.Fatal(err)
			}
			waitGone(ctx, t, pid)
			if c.Running() {
				t.Fatal("Running() after the postmaster is gone")
			}
			// The port is free once the postmaster is gone.
			l, err := net.Listen("tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
			if err != nil {
				t.Fatalf("port %d still taken: %v", c.Port, err)
			}
			l.Close()
			// Stopping a stopped cluster is not an error.
			if err := c.Stop(ctx, "fast"); err != nil {
				t.Fatalf("second stop: %v", err)
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.Connect(ctx, c.ConnString("registry"))
			if err != nil {
				t.Fatalf("connect after restart: %v", err)
			}
			defer conn.Close(ctx)
			var one int
			if err := conn.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
				t.Fatalf("query after restart: %v", err)
			}
		})
	}
	// A handle rebuilt from saved state (no Dir) restarts a killed
	// cluster and stops it: Dir defaults to DataDir's parent.
	rebuilt := &pglab.Cluster{Name: c.Name, BinDir: c.BinDir, DataDir: c.DataDir, Host: c.Host, Port: c.Port, LogFile: c.LogFile}
	pid, err := c.Pid()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	waitGone(ctx, t, pid)
	if err := rebuilt.Start(ctx); err != nil {
		t.Fatalf("start from rebuilt handle: %v", err)
	}
	if !rebuilt.Running() || !c.Running() {
		t.Fatal("not running after start from rebuilt handle")
	}
	if err := rebuilt.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if c.Running() {
		t.Fatal("running after stop from rebuilt handle")
	}
	if err := c.Stop(ctx, "smart"); err == nil {
		t.Fatal("Stop accepted mode smart")
	}
}

// waitGone waits until pid has exited (a zombie counts as exited).
func waitGone(ctx context.Context, t *testing.T, pid int) {
	t.Helper()
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			s := string(b)
			if i := strings.LastIndex(s, ") "); i >= 0 && s[i+2] == 'Z' {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("postmaster %d still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInitPrimaryRefusesUsedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tokyo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "something"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := pglab.InitPrimary(ctx, pglab.Options{Name: "tokyo", Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v, want a not-empty refusal", err)
	}
}
