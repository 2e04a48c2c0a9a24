// Package etcdtest gives a test a real, embedded, single-member etcd on
// loopback, closed when the test ends. Tests of the store, the audit log,
// the agents and the failover executor run against it instead of a fake:
// Txn compares, revisions and leases behave exactly as in production.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regdr/regdr/internal/etcdserver"
)

// startTimeout bounds one member's start; a single member elects itself at
// once, so this is only reached when something is badly wrong.
const startTimeout = 20 * time.Second

// portAttempts: a port found free can be taken by a parallel test before
// etcd binds it, so a start that fails with EADDRINUSE is retried on new
// ports.
const portAttempts = 3

// Start runs one etcd member in t.TempDir() on free loopback ports and
// returns its endpoints and a client. Both are closed in t.Cleanup.
func Start(t testing.TB) (endpoints []string, cli *clientv3.Client) {
	t.Helper()
	srv := StartServer(t, "etcd0")
	cli = Client(t, []string{srv.ClientURL()})
	return []string{srv.ClientURL()}, cli
}

// StartServer runs one single-member cluster named name in a fresh
// directory under t.TempDir(), closed in t.Cleanup. Tests that stop and
// restart etcd use it directly.
func StartServer(t testing.TB, name string) *etcdserver.Server {
	t.Helper()
	var lastErr error
	for attempt := range portAttempts {
		peer := FreeURL(t)
		m := etcdserver.Member{
			Name:      name,
			DataDir:   filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d", name, attempt)),
			ClientURL: FreeURL(t),
			PeerURL:   peer,
			Logger:    Logger(t),
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		srv, err := etcdserver.Start(ctx, m)
		cancel()
		if err == nil {
			t.Cleanup(srv.Close)
			return srv
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("etcdtest: %v", lastErr)
	return nil
}

// Client dials endpoints and closes the client in t.Cleanup.
func Client(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		// The client logs every reconnect at warn level; tests that stop
		// members would drown in it.
		Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// FreeURL returns http://127.0.0.1:<port> for a port that was free a
// moment ago.
func FreeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: find a free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("etcdtest: release port %s: %v", addr, err)
	}
	return "http://" + addr
}

// Logger returns a logger writing warnings and errors to the test log.
// Lines logged after the test has finished are dropped: testing panics on
// t.Log after completion, and a stopping etcd may still report an error.
func Logger(t testing.TB) *slog.Logger { return LoggerAt(t, slog.LevelWarn) }

// LoggerAt is Logger at another level, for tests that want a component's
// progress in their log (an agent's, say).
func LoggerAt(t testing.TB, level slog.Level) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// stop is registered when the logger is made, before the cleanup that
// closes whatever uses it, so (cleanups run last in, first out) a closing
// etcd can still log and anything later is dropped.
func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
