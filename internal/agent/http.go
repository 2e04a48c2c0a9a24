package agent

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regdr/regdr/internal/status"
)

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	return mux
}

// healthz answers 200 while the agent runs and can see at least one of its
// sources of truth; 503 says the agent is up but blind. Load balancers and
// systemd watchdogs key off the code, people read the body.
func (a *Agent) healthz(w http.ResponseWriter, r *http.Request) {
	st := a.Status()
	code := http.StatusOK
	if st.Health != "ok" && st.Health != "degraded" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"site": st.Site, "health": st.Health, "role": st.Role, "problems": st.Problems})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// metrics follow regdr_<area>_<name>_{bytes,seconds,...}; every series has
// the reporting site as a constant label so one Prometheus can scrape both.
type metrics struct {
	etcdUp       prometheus.Gauge
	epoch        prometheus.Gauge
	active       prometheus.Gauge
	peersAlive   prometheus.Gauge
	pgUp         prometheus.Gauge
	pgPrimary    prometheus.Gauge
	pgTimeline   prometheus.Gauge
	lagBytes     *prometheus.GaugeVec
	lagSeconds   *prometheus.GaugeVec
	heartbeatAge prometheus.Gauge
	zoneSerial   *prometheus.GaugeVec
	zoneBlocked  *prometheus.CounterVec

	secondarySerial     *prometheus.GaugeVec
	secondaryMismatches *prometheus.GaugeVec

	slotRetained *prometheus.GaugeVec
	slotActive   *prometheus.GaugeVec
	fenced       prometheus.Gauge
	syncOn       prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry, site string) *metrics {
	f := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"site": site}})
		reg.MustRegister(g)
		return g
	}
	v := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"site": site}}, labels)
		reg.MustRegister(g)
		return g
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &metrics{
		etcdUp:       f("regdr_etcd_reachable", "1 if the agent's last etcd read succeeded."),
		epoch:        f("regdr_active_epoch", "Epoch of the active-site record the agent last read."),
		active:       f("regdr_site_active", "1 if this site is the active site."),
		peersAlive:   f("regdr_agent_peers_alive", "Other agents seen alive through gossip."),
		pgUp:         f("regdr_pg_up", "1 if the site's PostgreSQL answered the last measurement."),
		pgPrimary:    f("regdr_pg_primary", "1 if the site's PostgreSQL is a primary (not in recovery)."),
		pgTimeline:   f("regdr_pg_timeline", "PostgreSQL timeline."),
		lagBytes:     v("regdr_replication_lag_bytes", "Replay lag of a standby in bytes, measured on the primary.", "replica"),
		lagSeconds:   v("regdr_replication_lag_seconds", "Replay lag of a standby in seconds, measured on the primary.", "replica"),
		heartbeatAge: f("regdr_replication_heartbeat_age_seconds", "Age of the newest replicated heartbeat row at a standby: the data-loss window if the primary died now."),
		zoneSerial:   v("regdr_zone_serial", "SOA serial of the zone version the site serves.", "zone"),
		zoneBlocked:  counter(reg, site, "regdr_zone_versions_blocked_total", "Zone versions the safety gates refused.", "zone"),

		secondarySerial:     v("regdr_secondary_serial", "SOA serial a public secondary answered at the last verification.", "secondary", "zone"),
		secondaryMismatches: v("regdr_secondary_sample_mismatches", "Sampled delegations a public secondary answers differently from the published version.", "secondary", "zone"),

		slotRetained: v("regdr_replication_slot_retained_bytes", "WAL a physical replication slot keeps on the primary.", "slot"),
		slotActive:   v("regdr_replication_slot_active", "1 if a standby is connected to the replication slot.", "slot"),
		fenced:       f("regdr_site_fenced", "1 if the agent fenced its own database (it could not confirm its site is active under the current epoch)."),
		syncOn:       f("regdr_replication_synchronous", "1 if the active site's synchronous_standby_names is set (failover.synchronous)."),
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (a *Agent) observe(e status.EtcdView, pg *status.Postgres, epoch uint64) {
	a.m.etcdUp.Set(b2f(e.Reachable))
	if e.Reachable {
		a.m.epoch.Set(float64(epoch))
		a.m.active.Set(b2f(a.role() == "active"))
	}
	a.m.peersAlive.Set(float64(a.gossip.AliveCount()))
	if pg == nil {
		return
	}
	a.m.pgUp.Set(b2f(pg.Reachable))
	a.m.pgPrimary.Set(b2f(pg.Role == "primary"))
	a.m.pgTimeline.Set(float64(pg.Timeline))
	a.m.lagBytes.Reset()
	a.m.lagSeconds.Reset()
	for _, r := range pg.Replicas {
		a.m.lagBytes.WithLabelValues(r.Name).Set(float64(r.LagBytes))
		if r.LagSeconds != nil {
			a.m.lagSeconds.WithLabelValues(r.Name).Set(*r.LagSeconds)
		}
	}
	if pg.HeartbeatAgeSeconds != nil {
		a.m.heartbeatAge.Set(*pg.HeartbeatAgeSeconds)
	}
	a.m.slotRetained.Reset()
	a.m.slotActive.Reset()
	for _, sl := range pg.Slots {
		a.m.slotRetained.WithLabelValues(sl.Name).Set(float64(sl.RetainedBytes))
		a.m.slotActive.WithLabelValues(sl.Name).Set(b2f(sl.Active))
	}
	a.mu.Lock()
	a.m.fenced.Set(b2f(a.fence.Fenced))
	a.m.syncOn.Set(b2f(a.st.Sync != nil && a.st.Sync.Setting != ""))
	a.mu.Unlock()
}

func counter(reg *prometheus.Registry, site, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"site": site}}, labels)
	reg.MustRegister(c)
	return c
}
