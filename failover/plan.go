// Package failover plans, approves and executes the moves of the registry
// between sites: switchover (both sites up, zero acknowledged writes
// lost), disaster failover (the active site is gone; the loss window is
// measured and recorded) and failback.
//
// A plan is the preflight's facts plus the intent (from, to, mode), hashed;
// a second operator signs that hash. Execution is a list of idempotent
// steps journalled in etcd under the operation, so a killed executor is
// resumed from the journal by anyone with the plan id.
package failover

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/overview"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/pgstate"
	"github.com/regdr/regdr/replicator/zone"
)

// Modes of an operation.
const (
	Switchover = "switchover"
	Disaster   = "disaster"
)

// Check outcomes. "unknown" is never a pass: a fact regdr could not
// establish is shown as such, and a disaster plan lists what it did not
// know.
const (
	Pass    = "pass"
	Fail    = "fail"
	Unknown = "unknown"
)

// Check is one preflight fact.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	// Advisory checks are shown but never block: a stale backup must not
	// stop the failover that avoids needing it.
	Advisory bool `json:"advisory,omitempty"`
}

func (c Check) blocks(mode string) bool {
	return c.Status == Fail && !c.Advisory && !(mode == Disaster && strings.HasPrefix(c.Name, "source"))
}

// Plan is what operators approve. Every field but Hash is covered by
// Hash; regenerating a plan under the same id gives a new hash, and the
// approvals of the old one do not count.
type Plan struct {
	ID          string    `json:"id"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	Mode        string    `json:"mode"`
	Epoch       uint64    `json:"epoch"`
	RequestedBy string    `json:"requested_by"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	Checks      []Check   `json:"checks"`
	// Facts the executor relies on, measured at plan time.
	Facts Facts  `json:"facts"`
	Hash  string `json:"hash"`
}

// Facts are the numbers a plan binds.
type Facts struct {
	// Published is each zone's last published serial (etcd index).
	Published map[string]uint32 `json:"published,omitempty"`
	// TargetSerials is what the target site holds, per zone.
	TargetSerials map[string]uint32 `json:"target_serials,omitempty"`
	// LagBytes is the target's replay lag as the primary measured it;
	// -1 when unknown.
	LagBytes int64 `json:"lag_bytes"`
	// HeartbeatAgeSeconds at the target: the data-loss window if the
	// source died now; -1 when unknown.
	HeartbeatAgeSeconds float64 `json:"heartbeat_age_seconds"`
}

// OK reports whether every check passed; a disaster plan tolerates the
// source's checks failing (that is the disaster), never the target's.
func (p *Plan) OK() bool {
	for _, c := range p.Checks {
		if c.blocks(p.Mode) {
			return false
		}
	}
	return true
}

// Failed lists the checks that block the plan.
func (p *Plan) Failed() []string {
	var out []string
	for _, c := range p.Checks {
		if c.blocks(p.Mode) {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return out
}

// ComputeHash is the hex SHA-256 of the plan's canonical JSON without its
// hash.
func (p *Plan) ComputeHash() string {
	c := *p
	c.Hash = ""
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Subject is what an approver signs: the plan id, its hash, who asked and
// until when.
func (p *Plan) Subject() approval.Subject {
	return approval.Subject{Kind: approval.KindFailover, ID: p.ID, Digest: p.Hash, Requester: p.RequestedBy, Expires: p.Expires}
}

// KeysFacts answers whether the target can sign every zone (the keys
// issue); nil reports the check as unknown.
type KeysFacts interface {
	Ready(ctx context.Context, site, zone string) (ok bool, detail string, err error)
}

// BackupFacts answers when a backup was last verified; nil reports the
// check as unknown.
type BackupFacts interface {
	LastVerified(ctx context.Context) (at time.Time, ok bool, err error)
}

// Preflight gathers the facts for moving the registry from its active
// site to to, and returns the plan (not yet stored).
type Preflight struct {
	Cfg     *config.Config
	Etcd    *clientv3.Client
	Keys    KeysFacts
	Backups BackupFacts
	Timeout time.Duration
	Now     func() time.Time
}

// NewID is a short random operation id.
func NewID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// Plan runs the preflight.
func (pf *Preflight) Plan(ctx context.Context, to, mode, requester string) (*Plan, error) {
	now := time.Now()
	if pf.Now != nil {
		now = pf.Now()
	}
	if pf.Timeout == 0 {
		pf.Timeout = 3 * time.Second
	}
	if mode != Switchover && mode != Disaster {
		return nil, fmt.Errorf("mode %q: want %s or %s", mode, Switchover, Disaster)
	}
	target, ok := pf.Cfg.Site(to)
	if !ok || target.Witness {
		return nil, fmt.Errorf("--to %s: not a data site in the config (sites: %s)", to, strings.Join(dataSiteNames(pf.Cfg), ", "))
	}
	keys := store.Keys{Prefix: pf.Cfg.Etcd.Prefix}
	ectx, cancel := context.WithTimeout(ctx, pf.Timeout)
	defer cancel()
	act, found, err := store.GetActive(ectx, pf.Etcd, keys)
	if err != nil {
		return nil, fmt.Errorf("read the active-site record: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("etcd has no active-site record: the deployment was never initialised")
	}
	if act.Site == to {
		return nil, fmt.Errorf("%s is already the active site (epoch %d)", to, act.Epoch)
	}
	fo := pf.Cfg.FailoverOrDefault()
	p := &Plan{ID: NewID(now), From: act.Site, To: to, Mode: mode, Epoch: act.Epoch, RequestedBy: requester,
		Created: now.UTC(), Expires: now.Add(fo.PlanTTL.Duration).UTC(),
		Facts: Facts{Published: map[string]uint32{}, TargetSerials: map[string]uint32{}, LagBytes: -1, HeartbeatAgeSeconds: -1}}
	add := func(name, st, format string, args ...any) {
		p.Checks = append(p.Checks, Check{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
	}

	source, _ := pf.Cfg.Site(act.Site)
	srcSt, srcErr := overview.FetchAgent(ctx, source.AgentAddr, pf.Timeout)
	tgtSt, tgtErr := overview.FetchAgent(ctx, target.AgentAddr, pf.Timeout)

	// The target: alive, standby, streaming.
	switch {
	case tgtErr != nil:
		add("target-agent", Fail, "%s agent at %s unreachable: %v", to, target.AgentAddr, tgtErr)
	case tgtSt.Role != "standby":
		add("target-agent", Fail, "%s agent reports role %q, want standby", to, tgtSt.Role)
	case tgtSt.Postgres == nil || !tgtSt.Postgres.Reachable:
		add("target-agent", Fail, "%s agent cannot reach its database", to)
	case tgtSt.Postgres.Role != "standby":
		add("target-agent", Fail, "%s database is %s, want a standby", to, tgtSt.Postgres.Role)
	default:
		add("target-agent", Pass, "%s agent alive (health %s), database standby on timeline %d", to, tgtSt.Health, tgtSt.Postgres.Timeline)
	}
	if tgtSt != nil && tgtSt.Postgres != nil && tgtSt.Postgres.HeartbeatAgeSeconds != nil {
		p.Facts.HeartbeatAgeSeconds = *tgtSt.Postgres.HeartbeatAgeSeconds
	}

	// The source: in a switchover it must be up (it is fenced and drained);
	// in a disaster it is expected down.
	switch {
	case srcErr != nil:
		add("source-agent", Fail, "%s agent at %s unreachable: %v", act.Site, source.AgentAddr, srcErr)
	case srcSt.Postgres == nil || !srcSt.Postgres.Reachable:
		add("source-agent", Fail, "%s agent alive but its database is unreachable", act.Site)
	default:
		add("source-agent", Pass, "%s agent alive, database %s", act.Site, srcSt.Postgres.Role)
	}

	// Database lag, as the primary measures it now (never a standby
	// read, never a stale report).
	lagFound := false
	var replicas []status.Replica
	if srcSt != nil && srcSt.Postgres != nil {
		replicas = srcSt.Postgres.Replicas
	}
	if fresh, err := measure(ctx, source.Postgres, pf.Timeout); err == nil {
		replicas = fresh.Replicas
	}
	{
		for _, r := range replicas {
			if r.Name != to {
				continue
			}
			lagFound = true
			p.Facts.LagBytes = r.LagBytes
			switch {
			case r.State != "streaming":
				add("database-lag", Fail, "%s replication state %q, want streaming", to, r.State)
			case mode == Switchover && r.LagBytes > fo.MaxLagBytes:
				add("database-lag", Fail, "%s replays %d bytes behind (limit %d)", to, r.LagBytes, fo.MaxLagBytes)
			default:
				add("database-lag", Pass, "%s streaming, %d bytes behind", to, r.LagBytes)
			}
		}
	}
	if !lagFound {
		if mode == Disaster && p.Facts.HeartbeatAgeSeconds >= 0 {
			add("database-lag", Unknown, "the primary cannot be asked; the newest replicated heartbeat at %s is %.1f s old: up to that much of acknowledged writes may be lost", to, p.Facts.HeartbeatAgeSeconds)
		} else {
			add("database-lag", Fail, "%s does not appear in %s's pg_stat_replication", to, act.Site)
		}
	}

	// Zones: the target holds a gated version at least at the last
	// published serial.
	for _, zc := range pf.Cfg.Zones {
		origin := dns.Fqdn(zc.Origin)
		last, found, err := store.LastPublished(ectx, pf.Etcd, keys, origin)
		var have uint32
		held := false
		if tgtSt != nil {
			for _, z := range tgtSt.Zones {
				if z.Origin == origin && z.Serial != 0 {
					have, held = z.Serial, true
				}
			}
		}
		name := "zone " + origin
		switch {
		case err != nil:
			add(name, Unknown, "last published serial unreadable: %v", err)
		case !held:
			add(name, Fail, "%s holds no gated version of %s", to, origin)
		case !found:
			add(name, Unknown, "%s holds serial %d; no published serial is recorded in etcd", to, have)
			p.Facts.TargetSerials[origin] = have
		case zone.SerialLess(have, last.Serial):
			add(name, Fail, "%s holds serial %d, behind the last published %d", to, have, last.Serial)
		default:
			add(name, Pass, "%s holds serial %d; last published %d", to, have, last.Serial)
		}
		if found {
			p.Facts.Published[origin] = last.Serial
		}
		if held {
			p.Facts.TargetSerials[origin] = have
		}
		// DNSSEC keys at the target.
		if pf.Keys == nil {
			add("keys "+origin, Unknown, "key possession at %s not established (keys are not reported)", to)
		} else if ok, detail, err := pf.Keys.Ready(ctx, to, origin); err != nil {
			add("keys "+origin, Unknown, "%v", err)
		} else if ok {
			add("keys "+origin, Pass, "%s", detail)
		} else {
			add("keys "+origin, Fail, "%s", detail)
		}
	}

	// Backups: advisory.
	n := len(p.Checks)
	if pf.Backups == nil {
		add("backup", Unknown, "no verified-backup record available")
	} else if at, ok, err := pf.Backups.LastVerified(ctx); err != nil {
		add("backup", Unknown, "%v", err)
	} else if !ok {
		add("backup", Fail, "no backup was ever verified")
	} else if age := now.Sub(at); age > fo.MaxBackupAge.Duration {
		add("backup", Fail, "last verified backup is %s old (limit %s)", age.Round(time.Minute), fo.MaxBackupAge.Duration)
	} else {
		add("backup", Pass, "last verified backup %s ago", age.Round(time.Minute))
	}
	for i := n; i < len(p.Checks); i++ {
		p.Checks[i].Advisory = true
	}

	// Freezes held by another operation.
	fs, err := store.ListFreezes(ectx, pf.Etcd, keys)
	switch {
	case err != nil:
		add("freeze", Unknown, "freezes unreadable: %v", err)
	default:
		var other []string
		for _, f := range fs {
			other = append(other, fmt.Sprintf("%s by %s (%s)", orAll(f.Zone), f.By, f.Reason))
		}
		if len(other) > 0 {
			add("freeze", Fail, "publication is frozen by someone else: %s; thaw it or finish that operation first", strings.Join(other, "; "))
		} else {
			add("freeze", Pass, "no freeze held")
		}
	}
	if op, found, err := RunningOperation(ectx, pf.Etcd, keys); err == nil && found {
		add("operation", Fail, "operation %s (%s→%s) is %s: resume or abort it first", op.Plan.ID, op.Plan.From, op.Plan.To, op.State)
	}
	p.Hash = p.ComputeHash()
	return p, nil
}

func orAll(z string) string {
	if z == "" || z == "*" {
		return "all zones"
	}
	return z
}

func dataSiteNames(cfg *config.Config) []string {
	var out []string
	for _, s := range cfg.DataSites() {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

// measure reads a site's replication state directly from its database.
func measure(ctx context.Context, conninfo string, timeout time.Duration) (*status.Postgres, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := pgx.Connect(ctx, conninfo)
	if err != nil {
		return nil, err
	}
	defer closeConn(c)
	return pgstate.Measure(ctx, c)
}
