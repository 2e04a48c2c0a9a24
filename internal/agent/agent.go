// Package agent is the per-site regdr process: it confirms its site's role
// against the active-site record in etcd, measures the site's registry
// database, keeps the site's zones (published at the active site, pulled
// from it at the standby), gossips a condensed view to the other agents and
// answers /healthz, /metrics and /v1/status.
//
// The loop is deliberately boring: one tick reads etcd, one measures
// PostgreSQL, zone changes arrive as events (file rename, NOTIFY). Every
// fact carries the time it was measured so the status can say how stale it
// is.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/membership"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/pgctl"
	"github.com/regdr/regdr/replicator/pgstate"
	"github.com/regdr/regdr/replicator/zoneserve"
	"github.com/regdr/regdr/replicator/zonestore"
)

// Version is stamped by the build.
var Version = "dev"

// Agent is one site's agent. Create with New, then Run.
type Agent struct {
	cfg   *config.Config
	site  config.Site
	log   *slog.Logger
	keys  store.Keys
	sites []string

	etcd   *clientv3.Client
	pool   *pgxpool.Pool
	gossip *membership.Gossip
	dns    *zoneserve.Server
	store  *zonestore.Store
	reg    *prometheus.Registry
	m      *metrics

	started time.Time
	// pullNow wakes the standby's zone puller (NOTIFY from the active site).
	pullNow chan struct{}
	// thaw wakes the zone loop when a freeze was lifted.
	thaw chan struct{}
	// rollbackNow wakes the zone loop when a rollback request is pending.
	rollbackNow chan struct{}
	// recheck wakes the zone loop to re-judge blocked candidates.
	recheck chan struct{}
	gates   []gates.Gate

	mu    sync.Mutex
	st    status.Agent
	zones map[string]status.ZoneState
	// checked is, per zone, the served version as this process checked
	// it: its index and whether it passed without a finding, so the next
	// version is checked incrementally (gates.Input.PreviousPassed).
	checked map[string]checkedVersion
	frozen  []string
	// secondaries holds the last verification per "secondary zone".
	secondaries map[string]status.SecondaryCheck
	// candidates are blocked versions kept for a recheck, by origin.
	candidates map[string]*candidate
	// fence is this site's self-fencing state.
	fence status.FenceState
	// takenOver is the epoch at which each zone was last published by
	// this site after becoming active.
	takenOver   map[string]uint64
	takeoverNow chan struct{}
	// takeoverAt is when this site became active, per zone it took over.
	takeoverAt map[string]time.Time
	// rejoining is set while the database is being rejoined as a standby.
	rejoining bool
	// leaseID is the active site's etcd lease (0: none held).
	leaseID clientv3.LeaseID
	// degrader applies the synchronous replication rule at the active site.
	degrader *pgctl.Degrader
}

// New validates the site and prepares an agent; nothing is started.
func New(cfg *config.Config, site string, log *slog.Logger) (*Agent, error) {
	s, ok := cfg.Site(site)
	if !ok {
		return nil, fmt.Errorf("site %q is not in the deployment config %s", site, cfg.Path())
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{
		cfg:         cfg,
		site:        *s,
		log:         log.With("site", site),
		keys:        store.Keys{Prefix: cfg.Etcd.Prefix},
		started:     time.Now(),
		pullNow:     make(chan struct{}, 1),
		thaw:        make(chan struct{}, 1),
		rollbackNow: make(chan struct{}, 1),
		recheck:     make(chan struct{}, 1),
		takeoverNow: make(chan struct{}, 1),
		takenOver:   map[string]uint64{},
		takeoverAt:  map[string]time.Time{},
		zones:       map[string]status.ZoneState{},
		secondaries: map[string]status.SecondaryCheck{},
		reg:         prometheus.NewRegistry(),
	}
	for _, s := range cfg.Sites {
		a.sites = append(a.sites, s.Name)
	}
	a.m = newMetrics(a.reg, site)
	gc := gates.DefaultConfig()
	gc.MaxRemovedPercent = cfg.Gates.MaxRemovedPercent
	gc.MaxAddedPercent = cfg.Gates.MaxAddedPercent
	gc.MaxChangedPercent = cfg.Gates.MaxChangedPercent
	gc.MinSignatureValidity = cfg.Gates.MinSignatureValidity.Duration
	gc.ReconcileTolerance = cfg.Gates.ReconcileTolerance
	gc.RequiredNames = cfg.Gates.RequiredNames
	if err := gc.Validate(); err != nil {
		return nil, fmt.Errorf("gate thresholds in %s: %w", cfg.Path(), err)
	}
	a.gates = append(gates.Default(gc), a.extraGates()...)
	a.st = status.Agent{Site: site, Version: Version, Started: a.started, Role: "unknown", Health: "starting"}
	if s.Witness {
		a.st.Role = "witness"
	}
	return a, nil
}

// Run starts every part and blocks until ctx is done. A part that cannot
// start (port taken, bad TSIG secret) is an error; a peer that is down
// (etcd, PostgreSQL, the other site) is a condition the agent reports and
// keeps retrying.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var err error
	if a.etcd, err = etcdclient.Dial(a.cfg); err != nil {
		return err
	}
	defer a.etcd.Close()

	if !a.site.Witness && a.site.Postgres != "" {
		pc, err := pgxpool.ParseConfig(a.site.Postgres)
		if err != nil {
			return fmt.Errorf("site %s postgres conninfo: %w", a.site.Name, err)
		}
		pc.MaxConns = 4
		pc.ConnConfig.ConnectTimeout = 2 * time.Second
		if a.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
			return fmt.Errorf("site %s postgres: %w", a.site.Name, err)
		}
		defer a.pool.Close()
	}

	var peers []string
	for _, s := range a.cfg.Sites {
		if s.Name != a.site.Name {
			peers = append(peers, s.GossipAddr)
		}
	}
	a.gossip, err = membership.Start(membership.Options{
		Site: a.site.Name, Bind: a.site.GossipAddr, Peers: peers,
		Profile: a.cfg.Agent.Gossip, Logger: a.log,
	})
	if err != nil {
		return err
	}
	defer a.gossip.Close()

	if !a.site.Witness && a.site.ZoneDir != "" {
		// Every accepted version is kept on the site's disk, so the last
		// good zone is always there to serve or roll back to (.hk 2004).
		if a.store, err = zonestore.Open(filepath.Join(a.site.ZoneDir, "store")); err != nil {
			return fmt.Errorf("site %s zone store: %w", a.site.Name, err)
		}
	}
	if !a.site.Witness && a.site.DNSAddr != "" {
		if err := a.startDNS(ctx); err != nil {
			return err
		}
		defer a.dns.Close()
	}

	ln, err := net.Listen("tcp", a.site.AgentAddr)
	if err != nil {
		return fmt.Errorf("agent HTTP on %s: %w", a.site.AgentAddr, err)
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent HTTP stopped", "err", err)
		}
	}()
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	a.log.Info("agent started", "http", a.site.AgentAddr, "gossip", a.site.GossipAddr, "dns", a.site.DNSAddr)

	// Learn the site's role before touching zones, so a restarted agent
	// publishes (or not) according to the active-site record.
	a.tick(ctx)
	var wg sync.WaitGroup
	if a.dns != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.zoneLoop(ctx) }()
	}
	a.startKeys(ctx, &wg)
	a.startBackup(ctx, &wg)
	a.startDrills(ctx, &wg)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	// A change of the active-site record (a failover's epoch step) is
	// acted on at once, not at the next tick.
	activeChanged := a.etcd.Watch(ctx, a.keys.Active())
	rejoin := time.NewTicker(5 * time.Second)
	defer rejoin.Stop()
	for {
		select {
		case <-ctx.Done():
			cancel()
			wg.Wait()
			a.log.Info("agent stopping")
			return nil
		case <-t.C:
			a.tick(ctx)
		case <-activeChanged:
			a.tick(ctx)
		case <-rejoin.C:
			a.gossip.Rejoin()
		}
	}
}

// tick refreshes every measured fact once. Each source has its own short
// deadline so one hung peer cannot stall the others.
func (a *Agent) tick(ctx context.Context) {
	role, active, epoch, etcdView, frozen := a.readEtcd(ctx)
	var pg *status.Postgres
	if a.pool != nil {
		pg = a.measurePostgres(ctx, role)
	}
	a.mu.Lock()
	thawed := false
	if etcdView.Reachable {
		a.st.Role, a.st.ActiveSite, a.st.Epoch = role, active, epoch
		// Any freeze that was there and is gone releases what it held.
		for _, f := range a.frozen {
			thawed = thawed || !slices.Contains(frozen, f)
		}
		a.frozen = frozen
	}
	if !etcdView.Reachable && !a.st.Etcd.LastOK.IsZero() {
		etcdView.LastOK = a.st.Etcd.LastOK
	}
	a.st.Etcd = etcdView
	a.st.Postgres = pg
	a.st.Problems = a.problems(etcdView, pg)
	a.st.Health = "ok"
	if len(a.st.Problems) > 0 {
		a.st.Health = "degraded"
	}
	meta := a.metaLocked()
	a.mu.Unlock()

	if !a.site.Witness {
		a.fenceCheck(ctx, etcdView.Reachable, role, active, epoch, pg)
		a.rejoinCheck(ctx, etcdView.Reachable, role, active, epoch, pg)
		a.syncCheck(ctx, role, pg)
		if etcdView.Reachable {
			a.takeoverCheck(ctx, role, epoch)
		}
	}
	if etcdView.Reachable && a.anyCandidateApproved(ctx) {
		a.requestRecheck()
	}
	if etcdView.Reachable && role == "active" && a.rollbackPending(ctx) {
		select {
		case a.rollbackNow <- struct{}{}:
		default:
		}
	}
	if thawed {
		select {
		case a.thaw <- struct{}{}:
		default:
		}
	}
	if err := a.gossip.SetMeta(meta); err != nil {
		a.log.Debug("gossip meta", "err", err)
	}
	a.observe(etcdView, pg, epoch)
}

func (a *Agent) readEtcd(ctx context.Context) (role, active string, epoch uint64, v status.EtcdView, frozen []string) {
	ctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	rec, found, err := store.GetActive(ctx, a.etcd, a.keys)
	if err != nil {
		return "", "", 0, status.EtcdView{Error: err.Error()}, nil
	}
	v = status.EtcdView{Reachable: true, LastOK: time.Now()}
	switch {
	case a.site.Witness:
		role = "witness"
	case !found:
		role = "unknown"
	case rec.Site == a.site.Name:
		role = "active"
	default:
		role = "standby"
	}
	if found {
		active, epoch = rec.Site, rec.Epoch
	}
	fs, err := store.ListFreezes(ctx, a.etcd, a.keys)
	if err == nil {
		for _, f := range fs {
			z := f.Zone
			if z == "" {
				z = "*"
			}
			frozen = append(frozen, z)
		}
		sort.Strings(frozen)
	}
	return role, active, epoch, v, frozen
}

func (a *Agent) measurePostgres(ctx context.Context, role string) *status.Postgres {
	ctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	st, err := pgstate.Measure(ctx, a.pool)
	if err != nil {
		return &status.Postgres{Error: err.Error(), MeasuredAt: time.Now()}
	}
	// Only the site etcd names active writes the heartbeat, and only to a
	// primary: a standby that thinks it is primary must not make WAL that
	// looks like liveness.
	if role == "active" && st.Role == "primary" {
		if err := pgstate.Heartbeat(ctx, a.pool, a.site.Name); err != nil {
			a.log.Warn("heartbeat", "err", err)
		}
	}
	return st
}

func (a *Agent) problems(e status.EtcdView, pg *status.Postgres) []string {
	var p []string
	if !e.Reachable {
		p = append(p, "etcd unreachable: "+e.Error)
	}
	if pg != nil && !pg.Reachable {
		p = append(p, "postgres unreachable: "+pg.Error)
	}
	if pg != nil && pg.Reachable {
		switch {
		case a.st.Role == "active" && pg.Role != "primary":
			p = append(p, "site is active but PostgreSQL is a "+pg.Role)
		case a.st.Role == "standby" && pg.Role != "standby":
			p = append(p, "site is standby but PostgreSQL is a "+pg.Role+" (split brain risk)")
		}
	}
	for _, z := range a.zones {
		if z.Error != "" {
			p = append(p, "zone "+z.Origin+": "+z.Error)
		}
	}
	if a.st.Keys != nil && a.st.Keys.Error != "" {
		p = append(p, "key transport: "+a.st.Keys.Error)
	}
	if a.fence.Fenced {
		p = append(p, "database fenced: "+a.fence.Reason)
	}
	if a.st.Role == "active" {
		for _, c := range a.secondaries {
			if c.Error != "" {
				p = append(p, fmt.Sprintf("secondary %s, zone %s: %s", c.Name, c.Zone, c.Error))
			}
			if len(c.Mismatches) > 0 {
				p = append(p, fmt.Sprintf("secondary %s, zone %s serial %d: %d of %d sampled delegations differ from what was published: %s",
					c.Name, c.Zone, c.Serial, len(c.Mismatches), c.Sampled, c.Mismatches[0]))
			}
		}
	}
	return p
}

func (a *Agent) metaLocked() status.Meta {
	m := status.Meta{Site: a.site.Name, Role: a.st.Role, ActiveSite: a.st.ActiveSite, Epoch: a.st.Epoch, Health: a.st.Health}
	if pg := a.st.Postgres; pg != nil && pg.Reachable {
		m.PGRole, m.Timeline, m.LSN = pg.Role, pg.Timeline, pg.LSN
		for _, r := range pg.Replicas {
			lb := r.LagBytes
			m.LagBytes = &lb
		}
	}
	if len(a.zones) > 0 {
		m.Serials = map[string]uint32{}
		for o, z := range a.zones {
			m.Serials[o] = z.Serial
		}
	}
	return m
}

// Status is a copy of the agent's current view, with the gossip peers.
func (a *Agent) Status() status.Agent {
	a.mu.Lock()
	st := a.st
	// Zone facts change between ticks (a blocked version, a freeze): derive
	// the problems from the live state so /v1/status never contradicts
	// itself.
	st.Problems = a.problems(st.Etcd, st.Postgres)
	if st.Health != "starting" {
		st.Health = "ok"
		if len(st.Problems) > 0 {
			st.Health = "degraded"
		}
	}
	st.Now = time.Now()
	st.Frozen = append([]string(nil), a.frozen...)
	st.Zones = nil
	for _, z := range a.zones {
		st.Zones = append(st.Zones, z)
	}
	st.Secondaries = nil
	for _, c := range a.secondaries {
		st.Secondaries = append(st.Secondaries, c)
	}
	a.mu.Unlock()
	sort.Slice(st.Zones, func(i, j int) bool { return st.Zones[i].Origin < st.Zones[j].Origin })
	sort.Slice(st.Secondaries, func(i, j int) bool {
		return st.Secondaries[i].Name+st.Secondaries[i].Zone < st.Secondaries[j].Name+st.Secondaries[j].Zone
	})
	if a.gossip != nil {
		st.Peers = a.gossip.Peers(a.sites)
	}
	return st
}
