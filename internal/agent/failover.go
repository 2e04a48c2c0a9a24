package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/pgctl"
	"github.com/regdr/regdr/replicator/zone"
)

// fenceCheck fences this site's database when the agent cannot confirm
// its site is active under the current epoch: etcd unreachable for longer
// than the lease, or etcd naming another site while this database is a
// primary (a site declared dead that comes back never resumes as primary
// on its own). It lifts only a fence it set itself, once etcd confirms the
// site active again under no running operation.
func (a *Agent) fenceCheck(ctx context.Context, reachable bool, role, active string, epoch uint64, pg *status.Postgres) {
	if a.pool == nil {
		return
	}
	now := time.Now()
	lease := a.cfg.Agent.LeaseTTL.Duration
	if lease <= 0 {
		lease = 10 * time.Second
	}
	a.mu.Lock()
	fs := a.fence
	a.mu.Unlock()
	if reachable && role == "active" && a.keepLease(ctx, epoch, lease) {
		fs.LastConfirmed = now
		if fs.Fenced && !a.operationRunning(ctx, "") {
			uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := a.withConn(uctx, pgctl.Unfence)
			cancel()
			if err != nil {
				fs.Error = err.Error()
			} else {
				a.log.Warn("etcd confirms this site active again: database unfenced", "epoch", epoch, "was", fs.Reason)
				fs = status.FenceState{LastConfirmed: now}
			}
		}
		a.setFence(fs)
		return
	}
	if reachable && role != "active" {
		a.dropLease(ctx)
	}
	primary := pg != nil && pg.Reachable && pg.Role == "primary"
	if !primary || fs.Fenced {
		a.setFence(fs)
		return
	}
	reason := ""
	switch {
	case reachable && role == "standby":
		if a.operationRunning(ctx, a.site.Name) {
			// Promoted by an operation whose epoch change is a moment away.
			return
		}
		reason = fmt.Sprintf("etcd names %s active at epoch %d while this database is a primary", active, epoch)
	case !fs.LastConfirmed.IsZero() && now.Sub(fs.LastConfirmed) > lease:
		reason = fmt.Sprintf("cannot confirm this site active for %s: etcd lease not renewed (lease %s)", now.Sub(fs.LastConfirmed).Round(time.Second), lease)
	case !reachable && fs.LastConfirmed.IsZero() && now.Sub(a.started) > lease:
		reason = fmt.Sprintf("never confirmed this site active since the agent started %s ago (lease %s)", now.Sub(a.started).Round(time.Second), lease)
	}
	if reason == "" {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := a.withConn(fctx, pgctl.Fence)
	cancel()
	if err != nil {
		fs.Error = err.Error()
		a.log.Error("fencing the database failed", "reason", reason, "err", err)
		a.setFence(fs)
		return
	}
	fs.Fenced, fs.Reason, fs.Since, fs.Error = true, reason, now, ""
	a.setFence(fs)
	a.log.Error("database fenced: it refuses writes", "reason", reason)
	if reachable {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, _ = audit.New(a.etcd, a.keys).Append(actx, audit.Entry{Who: "agent " + a.site.Name, Action: "fence",
			Target: a.site.Name, Result: "ok", Detail: map[string]string{"reason": reason}})
	}
}

func (a *Agent) setFence(fs status.FenceState) {
	a.mu.Lock()
	a.fence = fs
	f := fs
	a.st.Fence = &f
	a.mu.Unlock()
}

func (a *Agent) fenced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fence.Fenced
}

// operationRunning reports whether a failover operation is running (with
// target to, when to is not empty). It reads only the two fields it needs
// of the failover package's records, so the agent does not depend on it.
func (a *Agent) operationRunning(ctx context.Context, to string) bool {
	octx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := a.etcd.Get(octx, a.keys.Operations(), clientv3.WithPrefix())
	if err != nil {
		return false
	}
	for _, kv := range resp.Kvs {
		var op struct {
			State string `json:"state"`
			Plan  struct {
				To string `json:"to"`
			} `json:"plan"`
		}
		if json.Unmarshal(kv.Value, &op) == nil && op.State == "running" && (to == "" || op.Plan.To == to) {
			return true
		}
	}
	return false
}

// takeoverCheck asks the zone loop to publish above the last published
// serial when this site became active (the etcd index names another site
// or an older epoch). Level-triggered: an agent restarted mid-failover
// still does it.
func (a *Agent) takeoverCheck(ctx context.Context, role string, epoch uint64) {
	if role != "active" || a.store == nil || a.dns == nil || a.fenced() {
		return
	}
	for _, zc := range a.cfg.Zones {
		origin := dns.Fqdn(zc.Origin)
		a.mu.Lock()
		done := a.takenOver[origin] == epoch
		a.mu.Unlock()
		if done {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		v, found, err := store.LastPublished(lctx, a.etcd, a.keys, origin)
		cancel()
		if err != nil {
			continue
		}
		if found && v.Site == a.site.Name && v.Epoch >= epoch {
			a.mu.Lock()
			a.takenOver[origin] = epoch
			a.mu.Unlock()
			continue
		}
		if !found {
			continue
		}
		select {
		case a.takeoverNow <- struct{}{}:
		default:
		}
		return
	}
}

// takeovers runs in the zone loop: each zone whose last publication was
// by another site (or epoch) is published again from this site's newest
// gated version, with only the SOA re-signed under a serial above the
// last published one, so the secondaries take it from the new site.
func (a *Agent) takeovers(ctx context.Context) {
	a.mu.Lock()
	epoch := a.st.Epoch
	a.mu.Unlock()
	// When this site became active: generator files written since then
	// are the new site's registry output.
	since := time.Now()
	actx, acancel := context.WithTimeout(ctx, 2*time.Second)
	if rec, found, err := store.GetActive(actx, a.etcd, a.keys); err == nil && found && rec.Site == a.site.Name {
		since = rec.Since
	}
	acancel()
	for _, zc := range a.cfg.Zones {
		origin := dns.Fqdn(zc.Origin)
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, found, err := store.LastPublished(lctx, a.etcd, a.keys, origin)
		cancel()
		if err != nil || !found || (v.Site == a.site.Name && v.Epoch >= epoch) {
			continue
		}
		cur := a.dns.Zone(origin)
		if cur == nil {
			a.log.Error("takeover: this site holds no version to publish", "zone", origin)
			continue
		}
		serial := uint32(time.Now().Unix())
		for _, s := range []uint32{v.Serial, cur.Serial} {
			if !zone.SerialLess(s, serial) {
				serial = s + 1
			}
		}
		z, err := a.resign(cur, serial)
		if err != nil {
			a.setZoneError(origin, fmt.Errorf("takeover at epoch %d: %w", epoch, err))
			a.log.Error("takeover publish failed", "zone", origin, "err", err)
			continue
		}
		err = a.publish(ctx, z, "takeover:epoch "+strconv.FormatUint(epoch, 10), publishOpts{bypassFreeze: true, skipGates: map[string]bool{"budget": true}})
		if err != nil {
			a.log.Error("takeover publish refused", "zone", origin, "err", err)
			continue
		}
		a.mu.Lock()
		a.takenOver[origin] = epoch
		a.takeoverAt[origin] = since
		a.mu.Unlock()
		a.log.Info("took over publication", "zone", origin, "serial", serial, "epoch", epoch, "previous", v.Serial, "previous_site", v.Site)
		// The registry's generator may have written here before this
		// site learnt it is active; that file was ignored then. An older
		// file (from when this site was last active) is not looked at.
		if fi, err := os.Stat(ZoneFile(a.site.ZoneDir, origin)); err == nil && !fi.ModTime().Before(since.Add(-time.Second)) {
			a.loadFile(ctx, ZoneFile(a.site.ZoneDir, origin), false)
		}
	}
}

// resign returns base with only its SOA serial changed (and re-signed
// with this site's keys when the zone is signed).
func (a *Agent) resign(base *zone.Zone, serial uint32) (*zone.Zone, error) {
	rrs := make([]dns.RR, 0, base.Len())
	signed := false
	for _, rr := range base.All() {
		if rr.Header().Rrtype == dns.TypeDNSKEY {
			signed = true
		}
		rrs = append(rrs, dns.Copy(rr))
	}
	if signed {
		keys, err := zonesign.LoadKeys(a.site.KeyDir, base.Origin)
		if err != nil {
			return nil, fmt.Errorf("re-sign the SOA of %s at %s: %w", base.Origin, a.site.Name, err)
		}
		var rerr error
		if rrs, rerr = zonesign.ResignSOA(rrs, base.Origin, keys, serial, time.Now()); rerr != nil {
			return nil, rerr
		}
	} else {
		for _, rr := range rrs {
			if soa, ok := rr.(*dns.SOA); ok {
				soa.Serial = serial
			}
		}
	}
	return zone.FromRecords(base.Origin, rrs)
}

// withConn runs f on a connection of the agent's pool.
func (a *Agent) withConn(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	c, err := a.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return f(ctx, c.Conn())
}

// syncCheck applies the synchronous replication rule at the active site
// (pgctl.Degrader): the standbys are synchronous while one streams; after
// failover.sync_degrade_after without any, commits stop waiting.
func (a *Agent) syncCheck(ctx context.Context, role string, pg *status.Postgres) {
	fo := a.cfg.FailoverOrDefault()
	if !fo.Synchronous || a.pool == nil || role != "active" || pg == nil || !pg.Reachable || pg.Role != "primary" || a.fenced() {
		return
	}
	if a.degrader == nil {
		var want []string
		for _, s := range a.cfg.DataSites() {
			if s.Name != a.site.Name {
				want = append(want, s.Name)
			}
		}
		a.degrader = &pgctl.Degrader{Want: want, After: fo.SyncDegradeAfter.Duration}
	}
	var dec pgctl.SyncDecision
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := a.withConn(cctx, func(ctx context.Context, c *pgx.Conn) error {
		var err error
		dec, err = a.degrader.Check(ctx, c)
		return err
	})
	cancel()
	st := &status.SyncState{Setting: dec.Setting, Action: string(dec.Action), Reason: dec.Reason, At: time.Now(),
		Rule: fmt.Sprintf("synchronous while a standby streams; async after %s without one; synchronous again once one streams caught up", fo.SyncDegradeAfter.Duration)}
	if err != nil {
		st.Reason = err.Error()
	}
	switch dec.Action {
	case pgctl.SyncDegrade:
		a.log.Error("synchronous replication degraded to asynchronous", "reason", dec.Reason)
		st.Setting = ""
	case pgctl.SyncRestore:
		a.log.Warn("synchronous replication restored", "reason", dec.Reason)
		st.Setting = pgctl.SyncSetting(a.degrader.Want)
	}
	a.mu.Lock()
	a.st.Sync = st
	a.mu.Unlock()
}

// afterTakeover handles the registry generator's first versions at a site
// that just took over: the takeover published the last version under a
// serial of regdr's choosing, which the generator does not know, so its
// next version may carry the same or a lower serial (its clock, its
// counter). Such a version, written after the takeover, gets the next
// serial (only the SOA is re-signed) instead of being refused as a
// regression. A file older than the takeover is never raised: a stale file
// must meet the serial gate.
func (a *Agent) afterTakeover(z *zone.Zone, written time.Time) (*zone.Zone, uint32, bool) {
	a.mu.Lock()
	zs := a.zones[z.Origin]
	at, ok := a.takeoverAt[z.Origin]
	a.mu.Unlock()
	cur := a.dns.Zone(z.Origin)
	// Raised versions chain until the generator's own serials overtake.
	regdrSerial := strings.HasPrefix(zs.Source, "takeover:") || strings.Contains(zs.Source, "raised above the takeover")
	if !ok || cur == nil || !regdrSerial || written.Before(at.Add(-time.Second)) ||
		zone.SerialLess(cur.Serial, z.Serial) || cur.Digest == z.Digest {
		return nil, 0, false
	}
	rz, err := a.resign(z, cur.Serial+1)
	if err != nil {
		a.log.Error("raise the generator's serial after the takeover", "zone", z.Origin, "err", err)
		return nil, 0, false
	}
	a.log.Warn("generator version's serial raised above the takeover's", "zone", z.Origin, "from", z.Serial, "to", cur.Serial+1)
	return rz, z.Serial, true
}

// keepLease keeps this active site's etcd lease alive (granting it when
// there is none) with the site's lease key attached, and reports whether
// the lease was confirmed now. A site that is not active drops its lease.
func (a *Agent) keepLease(ctx context.Context, epoch uint64, ttl time.Duration) bool {
	lctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	if a.leaseID != 0 {
		if _, err := a.etcd.KeepAliveOnce(lctx, a.leaseID); err == nil {
			return true
		}
		a.leaseID = 0 // expired or unreachable: grant a new one
	}
	secs := int64(ttl / time.Second)
	if secs < 1 {
		secs = 1
	}
	g, err := a.etcd.Grant(lctx, secs)
	if err != nil {
		return false
	}
	if _, err := a.etcd.Put(lctx, a.keys.SiteLease(a.site.Name), fmt.Sprintf(`{"site":%q,"epoch":%d}`, a.site.Name, epoch), clientv3.WithLease(g.ID)); err != nil {
		return false
	}
	a.leaseID = g.ID
	return true
}

// dropLease revokes the lease of a site that is no longer active.
func (a *Agent) dropLease(ctx context.Context) {
	if a.leaseID == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	if _, err := a.etcd.Revoke(lctx, a.leaseID); err == nil {
		a.leaseID = 0
	}
}
