// Package overview assembles the whole deployment's status for `regdr
// status`: the active-site record from etcd, each agent's own report over
// HTTP, and — when etcd or an agent cannot be reached — what the other
// agents last heard through gossip. It says which source every fact came
// from, because at 3am "unknown" and "down" must not look alike.
package overview

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
)

// Collect gathers the deployment status. cli may be nil (etcd not dialed).
// It never fails as a whole: every unreachable part is reported in place.
func Collect(ctx context.Context, cfg *config.Config, cli *clientv3.Client, timeout time.Duration) status.Deployment {
	d := status.Deployment{Deployment: cfg.Deployment, Time: time.Now(), Source: "etcd"}
	keys := store.Keys{Prefix: cfg.Etcd.Prefix}

	var wg sync.WaitGroup
	agents := make([]*status.Agent, len(cfg.Sites))
	errs := make([]error, len(cfg.Sites))
	for i, s := range cfg.Sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agents[i], errs[i] = fetchAgent(ctx, s.AgentAddr, timeout)
		}()
	}
	if cli != nil {
		ectx, cancel := context.WithTimeout(ctx, timeout)
		rec, found, err := store.GetActive(ectx, cli, keys)
		if err == nil {
			d.Etcd = status.EtcdView{Reachable: true, LastOK: time.Now()}
			if found {
				d.ActiveSite, d.Epoch, d.Since = rec.Site, rec.Epoch, rec.Since
			} else {
				d.Notes = append(d.Notes, "etcd has no active-site record: the deployment was never initialised")
			}
			if fs, err := store.ListFreezes(ectx, cli, keys); err == nil {
				for _, f := range fs {
					z := f.Zone
					if z == "" {
						z = "*"
					}
					d.Frozen = append(d.Frozen, fmt.Sprintf("%s (%s, by %s)", z, f.Reason, f.By))
				}
			}
		} else {
			d.Etcd = status.EtcdView{Error: err.Error()}
		}
		cancel()
	} else {
		d.Etcd = status.EtcdView{Error: "not dialed"}
	}
	wg.Wait()

	// Gossip view: the freshest report any reachable agent has of each
	// site.
	gossip := map[string]status.Peer{}
	for _, a := range agents {
		if a == nil {
			continue
		}
		for _, p := range a.Peers {
			if old, ok := gossip[p.Site]; !ok || (!old.Alive && p.Alive) {
				gossip[p.Site] = p
			}
		}
	}
	if !d.Etcd.Reachable {
		d.Source = "memberlist"
		d.Notes = append(d.Notes, "etcd unreachable ("+d.Etcd.Error+"): roles are what the agents last confirmed, as gossiped")
		d.ActiveSite, d.Epoch = gossipActive(agents, gossip)
	}

	// The primary's pg_stat_replication is the authority for each
	// standby's lag.
	lag := map[string]status.Replica{}
	for _, a := range agents {
		if a != nil && a.Postgres != nil && a.Postgres.Role == "primary" {
			for _, r := range a.Postgres.Replicas {
				lag[r.Name] = r
			}
		}
	}

	for i, s := range cfg.Sites {
		row := status.SiteRow{Site: s.Name, Role: roleOf(s, d.ActiveSite)}
		a := agents[i]
		if a != nil && s.Name == d.ActiveSite {
			// What the public secondaries serve, as the publisher checked.
			d.Secondaries = a.Secondaries
		}
		if a != nil {
			if a.Fence != nil && a.Fence.Fenced {
				d.Fenced = append(d.Fenced, fmt.Sprintf("%s (%s)", s.Name, a.Fence.Reason))
			}
			if s.Name == d.ActiveSite && a.Sync != nil {
				d.Sync = a.Sync
			}
			if a.Backup != nil && d.Backup == nil {
				d.Backup = a.Backup
			}
			if s.Name != d.ActiveSite && a.Postgres != nil && a.Postgres.HeartbeatAgeSeconds != nil && d.RPOSeconds == nil {
				v := *a.Postgres.HeartbeatAgeSeconds
				d.RPOSeconds = &v
			}
		}
		switch {
		case a != nil:
			row.AgentAlive, row.AgentSeen, row.Health = true, "http", a.Health
			row.Problems = a.Problems
			if pg := a.Postgres; pg != nil {
				if pg.Reachable {
					row.PGRole, row.PGState, row.Timeline, row.LSN = pg.Role, "running", pg.Timeline, pg.LSN
				} else {
					row.PGState = "unreachable"
				}
			}
			for _, z := range a.Zones {
				if row.Serials == nil {
					row.Serials = map[string]uint32{}
				}
				row.Serials[z.Origin] = z.Serial
			}
		default:
			p, ok := gossip[s.Name]
			if ok && p.Alive {
				row.AgentAlive, row.AgentSeen = true, "gossip"
			} else {
				row.AgentSeen = "down"
			}
			row.Problems = append(row.Problems, fmt.Sprintf("agent at %s did not answer: %v", s.AgentAddr, errs[i]))
			if ok && p.Meta != nil {
				row.Health = p.Meta.Health
				row.PGRole, row.Timeline, row.LSN, row.Serials = p.Meta.PGRole, p.Meta.Timeline, p.Meta.LSN, p.Meta.Serials
				if row.PGRole != "" {
					row.PGState = "as gossiped"
				}
			}
		}
		if r, ok := lag[s.Name]; ok {
			lb := r.LagBytes
			row.LagBytes, row.LagSeconds = &lb, r.LagSeconds
		}
		d.Sites = append(d.Sites, row)
	}
	return d
}

func roleOf(s config.Site, active string) string {
	switch {
	case s.Witness:
		return "witness"
	case active == "":
		return "unknown"
	case s.Name == active:
		return "active"
	default:
		return "standby"
	}
}

// gossipActive picks the highest epoch any agent confirmed before etcd went
// away. Fencing (not this) is what keeps an outdated site from acting.
func gossipActive(agents []*status.Agent, gossip map[string]status.Peer) (string, uint64) {
	var site string
	var epoch uint64
	consider := func(s string, e uint64) {
		if s != "" && e >= epoch {
			site, epoch = s, e
		}
	}
	for _, a := range agents {
		if a != nil {
			consider(a.ActiveSite, a.Epoch)
		}
	}
	names := make([]string, 0, len(gossip))
	for n := range gossip {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if m := gossip[n].Meta; m != nil {
			consider(m.ActiveSite, m.Epoch)
		}
	}
	return site, epoch
}

func fetchAgent(ctx context.Context, addr string, timeout time.Duration) (*status.Agent, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	var a status.Agent
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, fmt.Errorf("decode agent status: %w", err)
	}
	return &a, nil
}

// FetchAgent reads one agent's /v1/status.
func FetchAgent(ctx context.Context, addr string, timeout time.Duration) (*status.Agent, error) {
	return fetchAgent(ctx, addr, timeout)
}
