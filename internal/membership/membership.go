// Package membership is the agents' gossip layer (hashicorp/memberlist).
// etcd is the source of truth for which site is active, but etcd needs a
// quorum; gossip does not. When a site is lost together with its etcd
// member, the surviving agents still know who is alive and what each site
// last reported, and `regdr status` can say so at 3am.
package membership

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/regdr/regdr/internal/status"
)

// Options configures one agent's membership.
type Options struct {
	// Site is this agent's site name; it is also the memberlist node name,
	// so two agents claiming one site collide loudly instead of silently.
	Site string
	// Bind is host:port to bind and advertise.
	Bind string
	// Peers are the other agents' gossip addresses.
	Peers []string
	// Profile is "wan" (default), "lan" or "local".
	Profile string
	Logger  *slog.Logger
}

// Config returns the memberlist configuration for a profile. "wan" is
// memberlist's WAN defaults (sites are far apart: tolerate latency, detect
// failure in tens of seconds); "local" is for the one-machine lab, where a
// killed agent must show as down within seconds.
func Config(profile string) (*memberlist.Config, error) {
	switch profile {
	case "", "wan":
		return memberlist.DefaultWANConfig(), nil
	case "lan":
		return memberlist.DefaultLANConfig(), nil
	case "local":
		c := memberlist.DefaultLocalConfig()
		// Probe every 500ms, suspect after ~1.5s: failure shows in
		// `regdr status` within a few seconds on loopback, at the price
		// of chatter that would be wasteful across sites.
		c.ProbeInterval = 500 * time.Millisecond
		c.ProbeTimeout = 200 * time.Millisecond
		c.SuspicionMult = 2
		c.GossipInterval = 100 * time.Millisecond
		c.PushPullInterval = 5 * time.Second
		return c, nil
	}
	return nil, fmt.Errorf("gossip profile %q: want wan, lan or local", profile)
}

// Gossip is a running membership.
type Gossip struct {
	ml    *memberlist.Memberlist
	peers []string
	self  string
	log   *slog.Logger

	mu   sync.Mutex
	meta []byte
	// nodes are copies taken in memberlist's event callbacks: the *Node
	// values Members() returns are memberlist's own, updated
	// concurrently, so reading them from another goroutine races.
	nodes map[string]nodeCopy
}

type nodeCopy struct {
	addr string
	meta []byte
}

// Start binds and joins the peers that answer. Peers that are down now are
// joined later by Rejoin; a site coming up alone is normal during a DR.
func Start(o Options) (*Gossip, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg, err := Config(o.Profile)
	if err != nil {
		return nil, err
	}
	host, portStr, err := net.SplitHostPort(o.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", o.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: bad port: %w", o.Bind, err)
	}
	g := &Gossip{peers: o.Peers, log: o.Logger, nodes: map[string]nodeCopy{}, self: o.Site}
	cfg.Name = o.Site
	cfg.BindAddr = host
	cfg.BindPort = port
	cfg.AdvertiseAddr = host
	cfg.AdvertisePort = port
	cfg.Delegate = delegate{g}
	cfg.Events = events{g}
	cfg.Logger = log.New(slogWriter{o.Logger}, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", o.Bind, err)
	}
	g.ml = ml
	g.Rejoin()
	return g, nil
}

// Rejoin tries every configured peer that is not currently a member.
func (g *Gossip) Rejoin() {
	known := map[string]bool{}
	g.mu.Lock()
	for _, n := range g.nodes {
		known[n.addr] = true
	}
	g.mu.Unlock()
	var missing []string
	for _, p := range g.peers {
		if !known[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	if n, err := g.ml.Join(missing); err != nil {
		g.log.Debug("gossip join", "peers", missing, "joined", n, "err", err)
	}
}

// SetMeta replaces what this agent gossips and pushes it out. It is cheap
// to call on every measurement: nothing is sent when the bytes did not
// change.
func (g *Gossip) SetMeta(m status.Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > memberlist.MetaMaxSize {
		// Too many zones to fit: drop the serials rather than the
		// liveness-critical fields.
		m.Serials = nil
		if b, err = json.Marshal(m); err != nil {
			return err
		}
	}
	g.mu.Lock()
	same := string(b) == string(g.meta)
	g.meta = b
	g.mu.Unlock()
	if same {
		return nil
	}
	return g.ml.UpdateNode(time.Second)
}

// Peers reports every configured site other than this one, alive or not.
func (g *Gossip) Peers(sites []string) []status.Peer {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []status.Peer
	for _, s := range sites {
		if s == g.self {
			continue
		}
		p := status.Peer{Site: s, State: "dead"}
		if n, ok := g.nodes[s]; ok {
			p.Addr, p.State, p.Alive = n.addr, "alive", true
			var m status.Meta
			if json.Unmarshal(n.meta, &m) == nil && m.Site != "" {
				p.Meta = &m
			}
		}
		out = append(out, p)
	}
	return out
}

// AliveCount is the number of peers (excluding this agent) gossip sees alive.
func (g *Gossip) AliveCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.nodes)
	if _, ok := g.nodes[g.self]; ok {
		n--
	}
	return n
}

func (g *Gossip) track(n *memberlist.Node) {
	c := nodeCopy{addr: n.Address(), meta: append([]byte(nil), n.Meta...)}
	g.mu.Lock()
	g.nodes[n.Name] = c
	g.mu.Unlock()
}

func (g *Gossip) forget(name string) {
	g.mu.Lock()
	delete(g.nodes, name)
	g.mu.Unlock()
}

// Close leaves the cluster (so peers see a clean departure, not a failure)
// and stops.
func (g *Gossip) Close() error {
	_ = g.ml.Leave(time.Second)
	return g.ml.Shutdown()
}

// delegate answers memberlist's callbacks. They run on memberlist's receive
// loop, so every method returns at once.
type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.meta) > limit {
		return nil
	}
	return append([]byte(nil), d.g.meta...)
}
func (delegate) NotifyMsg([]byte)                {}
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

type events struct{ g *Gossip }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.g.track(n)
	if n.Name != e.g.self {
		e.g.log.Info("gossip peer joined", "peer", n.Name)
	}
}
func (e events) NotifyLeave(n *memberlist.Node) {
	e.g.forget(n.Name)
	if n.Name != e.g.self {
		e.g.log.Warn("gossip peer gone", "peer", n.Name)
	}
}
func (e events) NotifyUpdate(n *memberlist.Node) { e.g.track(n) }

// slogWriter carries memberlist's log.Logger lines into slog at debug level:
// memberlist is chatty about every probe, which is noise at 3am.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("memberlist", "msg", string(p))
	return len(p), nil
}
