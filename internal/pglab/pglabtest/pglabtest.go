// Package pglabtest gives tests real PostgreSQL clusters: a primary (and
// standbys) on free loopback ports under t.TempDir, stopped when the test
// ends, with the server log's tail printed if the test failed.
package pglabtest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/pglab"
)

// setupTimeout bounds building one cluster; initdb plus start takes about a
// second here.
const setupTimeout = 60 * time.Second

// Logger writes to the test's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Primary starts a primary named "tokyo" with a replication slot for each
// standby name.
func Primary(t testing.TB, standbys ...string) *pglab.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	c, err := pglab.InitPrimary(ctx, pglab.Options{
		Name:     "tokyo",
		Dir:      filepath.Join(t.TempDir(), "tokyo"),
		Standbys: standbys,
		Logger:   Logger(t),
	})
	if err != nil {
		t.Fatalf("init primary: %v", err)
	}
	cleanup(t, c)
	return c
}

// Standby builds a streaming standby of primary named name (the primary
// must have a slot for it).
func Standby(t testing.TB, primary *pglab.Cluster, name string) *pglab.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	c, err := pglab.CreateStandby(ctx, primary, pglab.Options{
		Name:   name,
		Dir:    filepath.Join(t.TempDir(), name),
		Logger: Logger(t),
	})
	if err != nil {
		t.Fatalf("create standby %s: %v", name, err)
	}
	cleanup(t, c)
	return c
}

// Conn opens a connection to database db of c as role regdr, closed at
// cleanup. (pgx's pool would need another module in go.mod; a test needs
// only a connection or two.)
func Conn(t testing.TB, c *pglab.Cluster, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		t.Fatalf("connect to %s/%s: %v", c.Name, db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

func cleanup(t testing.TB, c *pglab.Cluster) {
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := c.Stop(ctx, "immediate"); err != nil {
			t.Errorf("stop %s: %v", c.Name, err)
		}
	})
}

func logTail(t testing.TB, c *pglab.Cluster) {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		t.Logf("%s server log: %v", c.Name, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("%s server log (last %d lines):\n%s", c.Name, len(lines), strings.Join(lines, "\n"))
}
