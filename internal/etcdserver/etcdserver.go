// Package etcdserver runs one embedded etcd member on loopback for the lab
// and the integration tests. A production deployment runs etcd as its own
// service (three members: tokyo, osaka, witness); this package exists so
// that `regdr lab` and the tests exercise a real etcd, quorum loss and all,
// inside one process.
//
// Start follows embed.StartEtcd's own shape: validate first, close anything
// half-started on error, and treat "started" as different from "ready":
// Start returns only once the member has joined its cluster (ReadyNotify),
// which for a multi-member cluster means a quorum of members is running.
// Members of a new multi-member cluster must therefore be started
// concurrently.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Member describes one embedded etcd member.
type Member struct {
	// Name is the member name; it must appear in InitialCluster.
	Name string
	// DataDir holds the member's WAL and snapshots (DataDir/member) and
	// etcd's own warning log (DataDir/etcd.log).
	DataDir string
	// ClientURL and PeerURL are http://<loopback IP>:<port>; both are
	// listened on and advertised as given.
	ClientURL, PeerURL string
	// InitialCluster maps member name to peer URL for the first start of a
	// new cluster or a join. Empty means a single-member cluster of this
	// member alone. Ignored by etcd once DataDir holds a member.
	InitialCluster map[string]string
	// ExistingCluster joins a running cluster to which this member was
	// already added (MemberAdd) instead of bootstrapping a new one.
	ExistingCluster bool
	// ForceNewCluster restarts from an existing DataDir as a one-member
	// cluster, discarding the other members. This is the recovery for a
	// lost quorum and may lose writes the survivor had not received.
	ForceNewCluster bool
	// Logger receives etcd's errors. nil discards them.
	Logger *slog.Logger
}

// Lab timing. Loopback round trips are well under a millisecond, so the
// defaults (100ms heartbeat, 1s election) only slow down failover tests.
const (
	// tickMs is the raft heartbeat; elections must be >= 5 ticks (etcd).
	tickMs = 50
	// electionMs trades how fast a lost leader is replaced against
	// spurious elections when the test machine stalls (GC, 2 cores
	// shared with PostgreSQL): 10 heartbeats of slack.
	electionMs = 500
	// snapshotCount is small so that snapshot and catch-up paths run in
	// the lab instead of only in long-lived production clusters.
	snapshotCount = 1000
	// snapshotCatchUpEntries is how many entries a leader keeps after a
	// snapshot for a slow follower; below it the follower gets a snapshot.
	snapshotCatchUpEntries = 500
	// clusterToken keeps a lab member from ever joining some other
	// cluster that happens to be reachable on the same loopback ports.
	clusterToken = "regdr-lab"
	// logFile is etcd's warning log inside DataDir, for post-mortems of a
	// drill; it is never read by regdr.
	logFile = "etcd.log"
)

// Validate checks the member description without touching disk or network,
// except that ForceNewCluster requires DataDir to hold a member already.
func (m Member) Validate() error {
	if m.Name == "" {
		return errors.New("etcd member: name is empty")
	}
	if m.DataDir == "" {
		return fmt.Errorf("etcd member %s: data dir is empty", m.Name)
	}
	if _, err := loopbackURL(m.ClientURL); err != nil {
		return fmt.Errorf("etcd member %s: client URL: %w", m.Name, err)
	}
	if _, err := loopbackURL(m.PeerURL); err != nil {
		return fmt.Errorf("etcd member %s: peer URL: %w", m.Name, err)
	}
	if m.ClientURL == m.PeerURL {
		return fmt.Errorf("etcd member %s: client and peer URL are both %s", m.Name, m.ClientURL)
	}
	if len(m.InitialCluster) > 0 {
		self, ok := m.InitialCluster[m.Name]
		if !ok {
			return fmt.Errorf("etcd member %s: not in initial cluster %s", m.Name, clusterString(m.InitialCluster))
		}
		if self != m.PeerURL {
			return fmt.Errorf("etcd member %s: initial cluster names peer %s, member has %s", m.Name, self, m.PeerURL)
		}
		for name, u := range m.InitialCluster {
			if name == "" {
				return errors.New("etcd member " + m.Name + ": initial cluster has an empty name")
			}
			if _, err := loopbackURL(u); err != nil {
				return fmt.Errorf("etcd member %s: initial cluster member %s: %w", m.Name, name, err)
			}
		}
	}
	if m.ExistingCluster && m.ForceNewCluster {
		return fmt.Errorf("etcd member %s: join an existing cluster and force a new one are exclusive", m.Name)
	}
	if m.ExistingCluster && len(m.InitialCluster) < 2 {
		return fmt.Errorf("etcd member %s: joining an existing cluster needs its members in the initial cluster", m.Name)
	}
	if m.ForceNewCluster {
		if _, err := os.Stat(filepath.Join(m.DataDir, "member", "wal")); err != nil {
			return fmt.Errorf("etcd member %s: force new cluster needs existing data in %s: %w", m.Name, m.DataDir, err)
		}
	}
	return nil
}

// loopbackURL parses an http URL whose host is a loopback IP with an
// explicit port. Names such as "localhost" are refused: they may resolve
// to a non-loopback address, and etcd would listen there.
func loopbackURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", s, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%q: scheme must be http (lab members are loopback only)", s)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%q: must not have a path", s)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%q: host must be a loopback IP address", s)
	}
	if port == "" || port == "0" {
		return nil, fmt.Errorf("%q: needs an explicit port (peers must know it)", s)
	}
	return u, nil
}

func clusterString(c map[string]string) string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + c[n]
	}
	return strings.Join(parts, ",")
}

// Server is a running member.
type Server struct {
	name      string
	clientURL string
	etcd      *embed.Etcd
	logf      *os.File
	closing   *atomic.Bool
	closeOnce sync.Once
}

// Start starts the member and waits until it has joined its cluster, or
// until ctx ends. On any error everything started is closed again.
func Start(ctx context.Context, m Member) (*Server, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd member %s: data dir: %w", m.Name, err)
	}
	logf, err := os.OpenFile(filepath.Join(m.DataDir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: log file: %w", m.Name, err)
	}
	closing := new(atomic.Bool)
	cfg := config(m, logf, closing)

	// embed.StartEtcd takes no context and, when joining, asks the other
	// members for the cluster over the network; run it aside so ctx bounds
	// the wait, and close whatever it returns if nobody is waiting anymore.
	type started struct {
		e   *embed.Etcd
		err error
	}
	ch := make(chan started, 1)
	go func() {
		e, err := embed.StartEtcd(cfg)
		ch <- started{e, err}
	}()
	var e *embed.Etcd
	select {
	case s := <-ch:
		if s.err != nil {
			logf.Close()
			return nil, fmt.Errorf("start etcd member %s: %w", m.Name, s.err)
		}
		e = s.e
	case <-ctx.Done():
		closing.Store(true)
		go func() {
			if s := <-ch; s.err == nil {
				closeEtcd(s.e)
			}
			logf.Close()
		}()
		return nil, fmt.Errorf("start etcd member %s: %w", m.Name, ctx.Err())
	}

	srv := &Server{name: m.Name, clientURL: m.ClientURL, etcd: e, logf: logf, closing: closing}
	select {
	case <-e.Server.ReadyNotify():
		return srv, nil
	case err := <-e.Err():
		srv.Close()
		return nil, fmt.Errorf("etcd member %s failed before ready: %w", m.Name, err)
	case <-e.Server.StopNotify():
		srv.Close()
		return nil, fmt.Errorf("etcd member %s stopped before ready", m.Name)
	case <-ctx.Done():
		srv.Close()
		return nil, fmt.Errorf("etcd member %s not ready (no quorum yet?): %w", m.Name, ctx.Err())
	}
}

func config(m Member, logf *os.File, closing *atomic.Bool) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.DataDir
	cu, _ := url.Parse(m.ClientURL) // checked by Validate
	pu, _ := url.Parse(m.PeerURL)
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	// Nothing else listens: no metrics or HTTP gateway ports beyond the two
	// the caller chose.
	cfg.ListenMetricsUrls = nil
	cfg.EnableGRPCGateway = false
	ic := m.InitialCluster
	if len(ic) == 0 {
		ic = map[string]string{m.Name: m.PeerURL}
	}
	cfg.InitialCluster = clusterString(ic)
	cfg.InitialClusterToken = clusterToken
	cfg.ClusterState = embed.ClusterStateFlagNew
	if m.ExistingCluster {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.ForceNewCluster = m.ForceNewCluster
	cfg.TickMs = tickMs
	cfg.ElectionMs = electionMs
	cfg.SnapshotCount = snapshotCount
	cfg.SnapshotCatchUpEntries = snapshotCatchUpEntries
	cfg.LogLevel = "warn"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapLogger(m, logf, closing))
	return cfg
}

// zapLogger sends etcd's warnings to DataDir/etcd.log and its errors also
// to the caller's slog logger. etcd logs every lost peer connection at
// warn level many times a second, which is expected noise whenever a lab
// drill stops a member. Once closing is set, errors go to the file only:
// etcd reports each listener it shuts down as a serving error.
func zapLogger(m Member, logf *os.File, closing *atomic.Bool) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	file := zapcore.NewCore(enc, zapcore.Lock(logf), zapcore.WarnLevel)
	if m.Logger == nil {
		return zap.New(file)
	}
	lg := m.Logger.With("etcd_member", m.Name)
	return zap.New(zapcore.NewTee(file, &slogCore{lg: lg, min: zapcore.ErrorLevel, mute: closing}))
}

// ClientURL is the URL clients dial.
func (s *Server) ClientURL() string { return s.clientURL }

// Name is the member name.
func (s *Server) Name() string { return s.name }

// Close stops the member and waits until it has stopped. It is safe to
// call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		closeEtcd(s.etcd)
		s.logf.Close()
	})
}

// closeEtcd closes e whether or not it ever became ready. embed.Etcd.Close
// first waits for the client servers, which start only once the member is
// ready or stopping; a member that never reached quorum would block it
// forever, so such a member's raft server is stopped first.
func closeEtcd(e *embed.Etcd) {
	select {
	case <-e.Server.ReadyNotify():
	default:
		e.Server.HardStop()
	}
	e.Close()
}
