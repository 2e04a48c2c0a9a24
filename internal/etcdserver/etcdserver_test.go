package etcdserver_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/etcdserver"
	"github.com/regdr/regdr/internal/etcdtest"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	withData := filepath.Join(dir, "with-data")
	if err := os.MkdirAll(filepath.Join(withData, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	ok := etcdserver.Member{
		Name: "tokyo", DataDir: filepath.Join(dir, "tokyo"),
		ClientURL: "http://127.0.0.1:23790", PeerURL: "http://127.0.0.1:23800",
	}
	three := map[string]string{
		"tokyo": "http://127.0.0.1:23800", "osaka": "http://127.0.0.1:23801", "witness": "http://127.0.0.1:23802",
	}
	tests := []struct {
		name    string
		edit    func(m *etcdserver.Member)
		wantErr string // "" = valid
	}{
		{"single member", func(m *etcdserver.Member) {}, ""},
		{"three members", func(m *etcdserver.Member) { m.InitialCluster = three }, ""},
		{"join existing", func(m *etcdserver.Member) { m.InitialCluster = three; m.ExistingCluster = true }, ""},
		{"force new with data", func(m *etcdserver.Member) { m.DataDir = withData; m.ForceNewCluster = true }, ""},
		{"other loopback address", func(m *etcdserver.Member) { m.ClientURL = "http://127.0.0.2:23790" }, ""},
		{"no name", func(m *etcdserver.Member) { m.Name = "" }, "name is empty"},
		{"no data dir", func(m *etcdserver.Member) { m.DataDir = "" }, "data dir is empty"},
		{"non-loopback client", func(m *etcdserver.Member) { m.ClientURL = "http://192.0.2.1:2379" }, "loopback"},
		{"hostname peer", func(m *etcdserver.Member) { m.PeerURL = "http://localhost:2380" }, "loopback"},
		{"https", func(m *etcdserver.Member) { m.ClientURL = "https://127.0.0.1:2379" }, "scheme"},
		{"no port", func(m *etcdserver.Member) { m.ClientURL = "http://127.0.0.1" }, "missing port"},
		{"port zero", func(m *etcdserver.Member) { m.PeerURL = "http://127.0.0.1:0" }, "explicit port"},
		{"path", func(m *etcdserver.Member) { m.PeerURL = "http://127.0.0.1:2380/x" }, "path"},
		{"same client and peer", func(m *etcdserver.Member) { m.PeerURL = m.ClientURL }, "both"},
		{"not in cluster", func(m *etcdserver.Member) {
			m.InitialCluster = map[string]string{"osaka": "http://127.0.0.1:23801"}
		}, "not in initial cluster"},
		{"cluster peer differs", func(m *etcdserver.Member) {
			m.InitialCluster = map[string]string{"tokyo": "http://127.0.0.1:9"}
		}, "initial cluster names peer"},
		{"cluster member not loopback", func(m *etcdserver.Member) {
			m.InitialCluster = map[string]string{"tokyo": "http://127.0.0.1:23800", "osaka": "http://198.51.100.1:2380"}
		}, "osaka"},
		{"join without members", func(m *etcdserver.Member) { m.ExistingCluster = true }, "needs its members"},
		{"join and force", func(m *etcdserver.Member) {
			m.InitialCluster = three
			m.ExistingCluster = true
			m.ForceNewCluster = true
		}, "exclusive"},
		{"force new without data", func(m *etcdserver.Member) { m.ForceNewCluster = true }, "needs existing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.edit(&m)
			err := m.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestStartRefusesInvalidBeforeListening: a bad member never reaches
// etcd, so nothing is left listening or written.
func TestStartRefusesInvalid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	_, err := etcdserver.Start(context.Background(), etcdserver.Member{
		Name: "x", DataDir: dir, ClientURL: "http://192.0.2.1:2379", PeerURL: "http://127.0.0.1:2380",
	})
	if err == nil {
		t.Fatal("Start accepted a non-loopback client URL")
	}
	if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
		t.Fatalf("data dir created for a refused member: %v", statErr)
	}
}

// TestStartReleasesOnBindFailure: when the client port is taken, Start
// fails with EADDRINUSE (etcdtest retries on it) and releases the peer
// port it had already bound.
func TestStartReleasesOnBindFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	peer := etcdtest.FreeURL(t)
	m := etcdserver.Member{
		Name: "a", DataDir: filepath.Join(t.TempDir(), "a"),
		ClientURL: "http://" + taken.Addr().String(), PeerURL: peer, Logger: etcdtest.Logger(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := etcdserver.Start(ctx, m)
	if err == nil {
		srv.Close()
		t.Fatal("Start succeeded on a taken client port")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start error = %v, want EADDRINUSE", err)
	}
	l, err := net.Listen("tcp", strings.TrimPrefix(peer, "http://"))
	if err != nil {
		t.Fatalf("peer port still held after failed Start: %v", err)
	}
	l.Close()
}

// TestStartTimesOutWithoutQuorum: the first member of a three-member
// cluster cannot become ready alone; Start must give up at the deadline
// and release its ports.
func TestStartTimesOutWithoutQuorum(t *testing.T) {
	names := []string{"a", "b", "c"}
	cluster := map[string]string{}
	for _, n := range names {
		cluster[n] = etcdtest.FreeURL(t)
	}
	m := etcdserver.Member{
		Name: "a", DataDir: filepath.Join(t.TempDir(), "a"),
		ClientURL: etcdtest.FreeURL(t), PeerURL: cluster["a"],
		InitialCluster: cluster, Logger: etcdtest.Logger(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	srv, err := etcdserver.Start(ctx, m)
	if err == nil {
		srv.Close()
		t.Fatal("member of a 3-member cluster became ready alone")
	}
	if !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("Start error = %v, want a not-ready error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Start took %v, past its 1.5s deadline", d)
	}
}

// TestThreeMembersKeepQuorum: a tokyo/osaka/witness cluster in one
// process; stopping the leader leaves two members that elect a new one
// and accept writes; stopping a second loses quorum; forcing the last
// survivor into a new cluster gets the data back.
func TestThreeMembersKeepQuorum(t *testing.T) {
	names := []string{"tokyo", "osaka", "witness"}
	dir := t.TempDir()
	cluster := map[string]string{}
	members := map[string]etcdserver.Member{}
	for _, n := range names {
		cluster[n] = etcdtest.FreeURL(t)
	}
	for _, n := range names {
		members[n] = etcdserver.Member{
			Name: n, DataDir: filepath.Join(dir, n),
			ClientURL: etcdtest.FreeURL(t), PeerURL: cluster[n],
			InitialCluster: cluster, Logger: etcdtest.Logger(t),
		}
	}

	// A new cluster becomes ready only with a quorum running, so the
	// members start together.
	servers := map[string]*etcdserver.Server{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := etcdserver.Start(ctx, members[n])
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			servers[n] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for _, s := range servers {
		t.Cleanup(s.Close)
	}
	for err := range errs {
		t.Fatal(err)
	}

	var eps []string
	for _, n := range names {
		eps = append(eps, servers[n].ClientURL())
	}
	cli := etcdtest.Client(t, eps)
	mustPut(t, cli, "/regdr/test/before", "1")
	if got := mustGet(t, cli, "/regdr/test/before"); got != "1" {
		t.Fatalf("get before = %q, want 1", got)
	}

	leader := leaderName(t, cli, servers)
	servers[leader].Close()
	var rest []string
	for _, n := range names {
		if n != leader {
			rest = append(rest, n)
		}
	}
	restCli := etcdtest.Client(t, []string{servers[rest[0]].ClientURL(), servers[rest[1]].ClientURL()})
	// The two survivors need an election first; poll until a write lands.
	waitFor(t, 15*time.Second, func() error { return put(restCli, "/regdr/test/after", "2", 2*time.Second) })
	if got := mustGet(t, restCli, "/regdr/test/before"); got != "1" {
		t.Fatalf("after losing leader %s: get before = %q, want 1", leader, got)
	}
	if got := mustGet(t, restCli, "/regdr/test/after"); got != "2" {
		t.Fatalf("after losing leader %s: get after = %q, want 2", leader, got)
	}

	// One of three is not a quorum: a write must not commit.
	servers[rest[0]].Close()
	last := rest[1]
	lastCli := etcdtest.Client(t, []string{servers[last].ClientURL()})
	if err := put(lastCli, "/regdr/test/lost", "3", 1500*time.Millisecond); err == nil {
		t.Fatalf("write committed on %s alone, without quorum", last)
	}
	servers[last].Close()

	// Disaster recovery of etcd itself: the survivor's data, as a new
	// one-member cluster.
	m := members[last]
	m.ForceNewCluster = true
	m.InitialCluster = nil
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	s, err := etcdserver.Start(ctx2, m)
	if err != nil {
		t.Fatalf("force new cluster on %s: %v", last, err)
	}
	t.Cleanup(s.Close)
	newCli := etcdtest.Client(t, []string{s.ClientURL()})
	if got := mustGet(t, newCli, "/regdr/test/after"); got != "2" {
		t.Fatalf("after force new cluster: get after = %q, want 2", got)
	}
	mustPut(t, newCli, "/regdr/test/recovered", "4")
	resp, err := newCli.MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 1 || resp.Members[0].Name != last {
		t.Fatalf("members after force new cluster = %v, want only %s", resp.Members, last)
	}
}

// TestRestartKeepsData: a member stopped and started on the same data
// dir serves what it held.
func TestRestartKeepsData(t *testing.T) {
	m := etcdserver.Member{
		Name: "solo", DataDir: filepath.Join(t.TempDir(), "solo"),
		ClientURL: etcdtest.FreeURL(t), PeerURL: etcdtest.FreeURL(t), Logger: etcdtest.Logger(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := etcdserver.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdtest.Client(t, []string{s.ClientURL()})
	mustPut(t, cli, "/regdr/k", "v")
	s.Close()
	s.Close() // idempotent

	s, err = etcdserver.Start(ctx, m)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(s.Close)
	cli2 := etcdtest.Client(t, []string{s.ClientURL()})
	if got := mustGet(t, cli2, "/regdr/k"); got != "v" {
		t.Fatalf("after restart get = %q, want v", got)
	}
	fi, err := os.Stat(filepath.Join(m.DataDir, "etcd.log"))
	if err != nil {
		t.Fatalf("etcd log: %v", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("etcd log mode %v, want no group/other access", fi.Mode().Perm())
	}
}

func leaderName(t *testing.T, cli *clientv3.Client, servers map[string]*etcdserver.Server) string {
	t.Helper()
	for n, s := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, s.ClientURL())
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", n, err)
		}
		if st.Leader == st.Header.MemberId {
			return n
		}
	}
	t.Fatal("no member reports itself leader")
	return ""
}

func put(cli *clientv3.Client, k, v string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cli.Put(ctx, k, v)
	return err
}

func mustPut(t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	if err := put(cli, k, v, 5*time.Second); err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

func mustGet(t *testing.T, cli *clientv3.Client, k string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func waitFor(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
