package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/agent"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone/zonetest"
	"github.com/regdr/regdr/replicator/zonepull"
)

const origin = "test."

// TestTwoAgents runs the tokyo and osaka agents in this process against a
// real etcd, a real streaming PostgreSQL pair and each other (gossip, DNS
// NOTIFY and AXFR on loopback). The subtests are steps of one story and
// run in order: each starts from the state the previous one left.
func TestTwoAgents(t *testing.T) {
	endpoints, cli := etcdtest.Start(t)
	primary := pglabtest.Primary(t, "osaka")
	standby := pglabtest.Standby(t, primary, "osaka")
	cfg := writeConfig(t, endpoints, primary, standby)
	keys := store.Keys{Prefix: cfg.Etcd.Prefix}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := store.InitActive(ctx, cli, keys, "tokyo", "agent test"); err != nil {
		t.Fatalf("init active-site record: %v", err)
	}

	tokyo := startAgent(t, cfg, "tokyo")
	osaka := startAgent(t, cfg, "osaka")
	agents := []*runningAgent{tokyo, osaka}

	t.Run("healthz", func(t *testing.T) {
		for _, a := range agents {
			waitFor(t, 10*time.Second, a.site+" /healthz 200", agents, func() error {
				code, body, err := a.get("/healthz")
				if err != nil {
					return err
				}
				if code != http.StatusOK {
					return fmt.Errorf("status %d: %s", code, body)
				}
				var h struct {
					Site   string `json:"site"`
					Health string `json:"health"`
				}
				if err := json.Unmarshal(body, &h); err != nil {
					return fmt.Errorf("/healthz is not JSON: %v: %s", err, body)
				}
				if h.Site != a.site || (h.Health != "ok" && h.Health != "degraded") {
					return fmt.Errorf("/healthz says site %q health %q", h.Site, h.Health)
				}
				return nil
			})
		}
	})

	t.Run("status", func(t *testing.T) {
		waitFor(t, 15*time.Second, "tokyo active with osaka streaming and gossiping", agents, func() error {
			st, err := tokyo.status()
			if err != nil {
				return err
			}
			if st.Site != "tokyo" || st.Role != "active" || st.ActiveSite != "tokyo" || st.Epoch != 1 {
				return fmt.Errorf("site %q role %q active %q epoch %d", st.Site, st.Role, st.ActiveSite, st.Epoch)
			}
			if !st.Etcd.Reachable {
				return fmt.Errorf("etcd unreachable: %s", st.Etcd.Error)
			}
			pg := st.Postgres
			if pg == nil || !pg.Reachable || pg.Role != "primary" || pg.Timeline != 1 {
				return fmt.Errorf("postgres %+v", pg)
			}
			if !hasReplica(pg, "osaka") {
				return fmt.Errorf("replicas %+v lack osaka", pg.Replicas)
			}
			return alivePeer(st, "osaka")
		})
		waitFor(t, 15*time.Second, "osaka standby with heartbeat and gossip", agents, func() error {
			st, err := osaka.status()
			if err != nil {
				return err
			}
			if st.Site != "osaka" || st.Role != "standby" || st.ActiveSite != "tokyo" || st.Epoch != 1 {
				return fmt.Errorf("site %q role %q active %q epoch %d", st.Site, st.Role, st.ActiveSite, st.Epoch)
			}
			pg := st.Postgres
			if pg == nil || !pg.Reachable || pg.Role != "standby" || pg.Timeline != 1 {
				return fmt.Errorf("postgres %+v", pg)
			}
			// Only tokyo (active, primary) writes heartbeats; osaka sees
			// them replicated.
			if pg.HeartbeatAgeSeconds == nil {
				return errors.New("no replicated heartbeat yet")
			}
			if len(st.Problems) != 0 || st.Health != "ok" {
				return fmt.Errorf("health %q problems %q", st.Health, st.Problems)
			}
			return alivePeer(st, "tokyo")
		})
	})

	var serial uint32 = 2026112401
	keyDir := filepath.Join(t.TempDir(), "keys")
	for _, ksk := range []bool{true, false} {
		if _, err := zonesign.GenerateKey(keyDir, origin, dns.ECDSAP256SHA256, ksk); err != nil {
			t.Fatalf("generate key: %v", err)
		}
	}

	t.Run("zone published and pulled", func(t *testing.T) {
		writeZone(t, keyDir, tokyo.cfg.ZoneDir, serial)
		for _, a := range agents {
			waitFor(t, 10*time.Second, a.site+" serving serial "+strconv.FormatUint(uint64(serial), 10), agents, func() error {
				return servesSerial(a, serial)
			})
		}
		want := map[string]string{"tokyo": "file:test.zone", "osaka": "axfr:tokyo"}
		for _, a := range agents {
			st, err := a.status()
			if err != nil {
				t.Fatal(err)
			}
			z, ok := zoneState(st, origin)
			if !ok || z.Serial != serial || z.Source != want[a.site] || z.Error != "" || z.Digest == "" {
				t.Errorf("%s /v1/status zone %+v (found %v); want serial %d from %s, a digest, no error",
					a.site, z, ok, serial, want[a.site])
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, a := range agents {
			want := map[string]string{
				`regdr_zone_serial{site="` + a.site + `",zone="test."}`: strconv.FormatUint(uint64(serial), 10),
				`regdr_agent_peers_alive{site="` + a.site + `"}`:        "1",
				`regdr_etcd_reachable{site="` + a.site + `"}`:           "1",
				`regdr_active_epoch{site="` + a.site + `"}`:             "1",
				`regdr_pg_up{site="` + a.site + `"}`:                    "1",
				`regdr_pg_timeline{site="` + a.site + `"}`:              "1",
			}
			if a.site == "tokyo" {
				want[`regdr_site_active{site="tokyo"}`] = "1"
				want[`regdr_pg_primary{site="tokyo"}`] = "1"
				want[`regdr_replication_lag_bytes{replica="osaka",site="tokyo"}`] = "" // present; value moves with heartbeats
			} else {
				want[`regdr_site_active{site="osaka"}`] = "0"
				want[`regdr_pg_primary{site="osaka"}`] = "0"
				want[`regdr_replication_heartbeat_age_seconds{site="osaka"}`] = ""
			}
			waitFor(t, 10*time.Second, a.site+" /metrics", agents, func() error {
				code, body, err := a.get("/metrics")
				if err != nil {
					return err
				}
				if code != http.StatusOK {
					return fmt.Errorf("status %d", code)
				}
				got := parseMetrics(string(body))
				for series, v := range want {
					g, ok := got[series]
					switch {
					case !ok:
						return fmt.Errorf("no series %s", series)
					case v != "" && !sameNumber(g, v):
						return fmt.Errorf("%s = %s, want %s", series, g, v)
					}
				}
				return nil
			})
		}
	})

	t.Run("lower serial refused", func(t *testing.T) {
		writeZone(t, keyDir, tokyo.cfg.ZoneDir, serial-1)
		waitFor(t, 10*time.Second, "tokyo to report the refused zone", agents, func() error {
			st, err := tokyo.status()
			if err != nil {
				return err
			}
			z, _ := zoneState(st, origin)
			if !strings.Contains(z.Error, "blocked by serial") || z.Blocked == nil || z.Blocked.Serial != serial-1 {
				return fmt.Errorf("zone state %+v", z)
			}
			if z.Serial != serial {
				return fmt.Errorf("zone state serial %d, want still %d", z.Serial, serial)
			}
			if !containsSub(st.Problems, "zone test.") || st.Health != "degraded" {
				return fmt.Errorf("health %q problems %q; want degraded with the zone error", st.Health, st.Problems)
			}
			return nil
		})
		// Still the higher version on the wire, at both sites.
		for _, a := range agents {
			if err := servesSerial(a, serial); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("switchover to osaka", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		rec, err := store.CASActive(ctx, cli, keys, 1, "osaka", "agent test switchover", time.Now())
		if err != nil {
			t.Fatalf("move the active-site record to osaka: %v", err)
		}
		if rec.Epoch != 2 {
			t.Fatalf("epoch after CAS = %d, want 2", rec.Epoch)
		}
		start := time.Now()
		waitFor(t, 4*time.Second, "osaka active", agents, func() error {
			st, err := osaka.status()
			if err != nil {
				return err
			}
			if st.Role != "active" || st.ActiveSite != "osaka" || st.Epoch != 2 {
				return fmt.Errorf("role %q active %q epoch %d", st.Role, st.ActiveSite, st.Epoch)
			}
			// The database has not been promoted: osaka must say so.
			if !containsSub(st.Problems, "site is active but PostgreSQL is a standby") {
				return fmt.Errorf("problems %q", st.Problems)
			}
			return nil
		})
		waitFor(t, 4*time.Second, "tokyo standby warning of split brain", agents, func() error {
			st, err := tokyo.status()
			if err != nil {
				return err
			}
			if st.Role != "standby" || st.ActiveSite != "osaka" || st.Epoch != 2 {
				return fmt.Errorf("role %q active %q epoch %d", st.Role, st.ActiveSite, st.Epoch)
			}
			if !containsSub(st.Problems, "site is standby but PostgreSQL is a primary (split brain risk)") {
				return fmt.Errorf("problems %q", st.Problems)
			}
			if st.Health != "degraded" {
				return fmt.Errorf("health %q", st.Health)
			}
			return nil
		})
		t.Logf("both agents followed the record in %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("zone flows from osaka after switchover", func(t *testing.T) {
		// A file dropped at the now-standby tokyo must be ignored, even
		// with a higher serial: only the active site publishes. Written
		// first, so an agent that wrongly took it would then refuse the
		// lower serial osaka publishes, and the wait below would fail.
		writeZone(t, keyDir, tokyo.cfg.ZoneDir, serial+2)
		writeZone(t, keyDir, osaka.cfg.ZoneDir, serial+1)
		for _, a := range []*runningAgent{osaka, tokyo} {
			waitFor(t, 10*time.Second, a.site+" serving osaka's version", agents, func() error {
				return servesSerial(a, serial+1)
			})
		}
		st, err := tokyo.status()
		if err != nil {
			t.Fatal(err)
		}
		z, _ := zoneState(st, origin)
		if z.Serial != serial+1 || z.Source != "axfr:osaka" || z.Error != "" {
			t.Fatalf("tokyo zone state %+v; want serial %d from axfr:osaka and the old error cleared", z, serial+1)
		}
	})
}

// runningAgent is one agent.Run in a goroutine, stopped at cleanup.
type runningAgent struct {
	site string
	cfg  config.Site
	http *http.Client

	mu     sync.Mutex
	exited bool
	err    error
}

func (a *runningAgent) get(path string) (int, []byte, error) {
	resp, err := a.http.Get("http://" + a.cfg.AgentAddr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (a *runningAgent) status() (status.Agent, error) {
	var st status.Agent
	code, body, err := a.get("/v1/status")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("%s /v1/status: %d: %s", a.site, code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s /v1/status is not JSON: %w", a.site, err)
	}
	return st, nil
}

// stopped says whether Run has returned (it must not, while the test runs).
func (a *runningAgent) stopped() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.exited {
		return fmt.Errorf("agent %s stopped early: %v", a.site, a.err)
	}
	return nil
}

func startAgent(t *testing.T, cfg *config.Config, site string) *runningAgent {
	t.Helper()
	s, ok := cfg.Site(site)
	if !ok {
		t.Fatalf("no site %s in config", site)
	}
	ag, err := agent.New(cfg, site, etcdtest.LoggerAt(t, slog.LevelInfo))
	if err != nil {
		t.Fatalf("new agent %s: %v", site, err)
	}
	ra := &runningAgent{site: site, cfg: *s, http: &http.Client{Timeout: 2 * time.Second}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := ag.Run(ctx)
		ra.mu.Lock()
		ra.exited, ra.err = true, err
		ra.mu.Unlock()
	}()
	// Registered after etcd's and PostgreSQL's cleanups, so it runs
	// before them: the agent stops while its peers still answer.
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
			if ra.err != nil {
				t.Errorf("agent %s: %v", site, ra.err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("agent %s did not stop within 15s of cancel", site)
		}
	})
	return ra
}

// waitFor polls cond until it returns nil, failing after within or as
// soon as an agent has stopped.
func waitFor(t *testing.T, within time.Duration, what string, agents []*runningAgent, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, a := range agents {
			if err := a.stopped(); err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s: %v", what, within, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeConfig builds the two-site deployment on free loopback ports,
// writes it with its TSIG secret, and loads it back as an agent would.
func writeConfig(t *testing.T, endpoints []string, primary, standby *pglab.Cluster) *config.Config {
	t.Helper()
	dir := t.TempDir()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "xfr.tsig")
	if err := os.WriteFile(secretFile, []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := newFreePorts()
	d := config.Default()
	cfg := &config.Config{
		Deployment: "agenttest",
		Etcd:       config.Etcd{Endpoints: endpoints, Prefix: "/regdr", DialTimeout: config.Duration{Duration: 2 * time.Second}},
		Zones:      []config.Zone{{Origin: origin, Source: "file", TSIGKey: "xfr"}},
		TSIGKeys:   []config.TSIGKey{{Name: "xfr", Algorithm: "hmac-sha256", SecretFile: secretFile}},
		Gates:      d.Gates,
		Agent:      config.Agent{HeartbeatInterval: d.Agent.HeartbeatInterval, Gossip: "local", LeaseTTL: config.Duration{Duration: 5 * time.Second}},
	}
	for _, c := range []*pglab.Cluster{primary, standby} {
		cfg.Sites = append(cfg.Sites, config.Site{
			Name:       c.Name,
			AgentAddr:  ports.addr(t),
			GossipAddr: ports.addr(t),
			DNSAddr:    ports.addr(t),
			Postgres:   c.ConnString("registry") + " connect_timeout=2",
			KeyDir:     filepath.Join(dir, c.Name, "keys"),
			ZoneDir:    filepath.Join(dir, c.Name, "zones"),
		})
	}
	if probs := cfg.Validate(); len(probs) > 0 {
		t.Fatalf("test config invalid: %v", probs)
	}
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "regdr.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(path)
	if err != nil {
		t.Fatalf("load test config: %v", err)
	}
	return loaded
}

// freePorts hands out loopback addresses whose port was free for both TCP
// and UDP a moment ago (gossip and DNS bind both), never the same twice.
// They are on a loopback address of their own, picked at random, so an
// agent or lab of another test on this machine that still gossips to or
// NOTIFYs a port it once used cannot reach these agents.
type freePorts struct {
	host string
	seen map[string]bool
}

func newFreePorts() *freePorts {
	var b [3]byte
	_, _ = rand.Read(b[:])
	host := fmt.Sprintf("127.%d.%d.%d", 100+int(b[0])%100, b[1], 1+int(b[2])%254)
	return &freePorts{host: host, seen: map[string]bool{}}
}

func (p *freePorts) addr(t *testing.T) string {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(p.host, "0"))
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		addr := l.Addr().String()
		u, uerr := net.ListenPacket("udp", addr)
		l.Close()
		if uerr != nil {
			continue
		}
		u.Close()
		if p.seen[addr] {
			continue
		}
		p.seen[addr] = true
		return addr
	}
	t.Fatal("no port free for both TCP and UDP in 50 tries")
	return ""
}

// writeZone signs a small registry-shaped zone at serial and drops it into
// zoneDir the way the generator does (temp file, rename).
func writeZone(t *testing.T, keyDir, zoneDir string, serial uint32) {
	t.Helper()
	keys, err := zonesign.LoadKeys(keyDir, origin)
	if err != nil {
		t.Fatalf("load keys: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	signed, err := zonesign.Sign(ctx, zonetest.Records(origin, serial, 60), origin, keys, zonesign.Options{})
	if err != nil {
		t.Fatalf("sign zone at serial %d: %v", serial, err)
	}
	if err := zonesign.WriteFileAtomic(agent.ZoneFile(zoneDir, origin), signed); err != nil {
		t.Fatalf("write zone at serial %d: %v", serial, err)
	}
}

func servesSerial(a *runningAgent, want uint32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, err := zonepull.QuerySerial(ctx, a.cfg.DNSAddr, origin)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s serves serial %d, want %d", a.site, got, want)
	}
	return nil
}

func zoneState(st status.Agent, origin string) (status.ZoneState, bool) {
	for _, z := range st.Zones {
		if z.Origin == origin {
			return z, true
		}
	}
	return status.ZoneState{}, false
}

func hasReplica(pg *status.Postgres, name string) bool {
	for _, r := range pg.Replicas {
		if r.Name == name && r.State == "streaming" {
			return true
		}
	}
	return false
}

func alivePeer(st status.Agent, site string) error {
	for _, p := range st.Peers {
		if p.Site == site {
			if !p.Alive || p.State != "alive" {
				return fmt.Errorf("peer %s: alive %v state %q", site, p.Alive, p.State)
			}
			if p.Meta == nil || p.Meta.Site != site {
				return fmt.Errorf("peer %s: no gossiped state yet", site)
			}
			return nil
		}
	}
	return fmt.Errorf("peers %+v lack %s", st.Peers, site)
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// parseMetrics maps each series of the Prometheus text format
// (name{labels}) to its value.
func parseMetrics(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		out[line[:i]] = line[i+1:]
	}
	return out
}

// sameNumber compares two sample values as numbers: the exposition
// format writes 2026112401 as 2.026112401e+09.
func sameNumber(a, b string) bool {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	return errA == nil && errB == nil && x == y
}
