package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonemeta"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zoneserve"
	"github.com/regdr/regdr/replicator/zonestore"
)

// ZoneFile is where the registry's generator drops a zone for the agent of
// the site: <zone_dir>/<origin without the final dot>.zone ("root.zone"
// for the root). The generator must write it to a temporary name and
// rename it into place: the agent reacts only to the rename, so a
// half-written file is never read (.hk 2004).
func ZoneFile(dir, origin string) string {
	name := strings.TrimSuffix(dns.Fqdn(origin), ".")
	if name == "" {
		name = "root"
	}
	return filepath.Join(dir, name+".zone")
}

func (a *Agent) tsigFor(origin string) (name, secret string, err error) {
	for _, z := range a.cfg.Zones {
		if dns.Fqdn(z.Origin) != dns.Fqdn(origin) {
			continue
		}
		_, secret, err := a.cfg.TSIG(z.TSIGKey)
		if err != nil {
			return "", "", fmt.Errorf("zone %s tsig key %s: %w", origin, z.TSIGKey, err)
		}
		return dns.Fqdn(z.TSIGKey), secret, nil
	}
	return "", "", fmt.Errorf("zone %s is not in the deployment config", origin)
}

func (a *Agent) startDNS(ctx context.Context) error {
	keys := map[string]string{}
	for _, k := range a.cfg.TSIGKeys {
		_, secret, err := a.cfg.TSIG(k.Name)
		if err != nil {
			return fmt.Errorf("tsig key %s: %w", k.Name, err)
		}
		keys[dns.Fqdn(k.Name)] = secret
	}
	srv, err := zoneserve.New(zoneserve.Options{
		Addr:   a.site.DNSAddr,
		TSIG:   keys,
		Logger: a.log,
		// IXFR from the stored differences between versions.
		History: a.store,
		OnNotify: func(origin string, serial uint32, from netip.AddrPort) {
			// Runs on the DNS server's goroutine: hand off, never block.
			select {
			case a.pullNow <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("hidden primary on %s: %w", a.site.DNSAddr, err)
	}
	a.dns = srv
	if err := a.dns.Start(ctx); err != nil {
		return fmt.Errorf("hidden primary on %s: %w", a.site.DNSAddr, err)
	}
	return nil
}

// zoneLoop keeps the served zones current: at the active site from the
// generator's files, at the standby by pulling from the active site.
func (a *Agent) zoneLoop(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.log.Error("zone watcher", "err", err)
		return
	}
	defer w.Close()
	if a.site.ZoneDir != "" {
		if err := os.MkdirAll(a.site.ZoneDir, 0o755); err == nil {
			if err := w.Add(a.site.ZoneDir); err != nil {
				a.log.Error("watch zone dir", "dir", a.site.ZoneDir, "err", err)
			}
		}
	}
	// Start from the store: a restarted agent serves its last accepted
	// version at once, never an empty zone (RIPE 2012), and then gates
	// whatever the generator left on disk against it.
	for _, z := range a.cfg.Zones {
		a.restoreFromStore(dns.Fqdn(z.Origin))
		if a.dns.Zone(dns.Fqdn(z.Origin)) == nil {
			a.coldStart(ctx, dns.Fqdn(z.Origin))
		}
		a.loadFile(ctx, ZoneFile(a.site.ZoneDir, z.Origin), false)
	}
	refresh := time.NewTicker(10 * time.Second)
	defer refresh.Stop()
	a.pullIfStandby(ctx)
	a.pullFromSigner(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.Events:
			if ev.Op&(fsnotify.Create|fsnotify.Rename) != 0 && strings.HasSuffix(ev.Name, ".zone") {
				a.loadFile(ctx, ev.Name, true)
			}
		case err := <-w.Errors:
			a.log.Warn("zone watcher", "err", err)
		case <-a.pullNow:
			a.pullIfStandby(ctx)
			a.pullFromSigner(ctx)
		case <-refresh.C:
			a.pullIfStandby(ctx)
			a.pullFromSigner(ctx)
		case <-a.thaw:
			a.thawed(ctx)
		case <-a.rollbackNow:
			a.rollbacks(ctx)
		case <-a.recheck:
			a.recheckCandidates(ctx)
		case <-a.takeoverNow:
			a.takeovers(ctx)
		}
	}
}

func (a *Agent) role() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Role
}

// loadFile reads a generator file. Only the active site publishes what its
// generator writes; a standby reads its own files only at start.
func (a *Agent) loadFile(ctx context.Context, path string, event bool) {
	origin := ""
	for _, z := range a.cfg.Zones {
		if ZoneFile(a.site.ZoneDir, z.Origin) == path {
			origin = dns.Fqdn(z.Origin)
		}
	}
	if origin == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if event && a.role() != "active" {
		a.log.Warn("zone file written at a standby site: ignored", "file", path)
		return
	}
	z, err := zone.ParseFile(path, origin)
	if err != nil {
		a.setZoneError(origin, err)
		a.log.Error("zone file refused", "zone", origin, "err", err)
		return
	}
	var o publishOpts
	if m, ok, err := zonemeta.Read(path, z.Serial); err != nil {
		a.log.Warn("zone sidecar unreadable: no reconciliation", "zone", origin, "err", err)
	} else if ok {
		n := m.Delegations
		o.expectedDelegations = &n
	} else {
		o.expectedDelegations = a.reconcileCount(ctx)
	}
	source := "file:" + filepath.Base(path)
	if rz, from, ok := a.afterTakeover(z, fi.ModTime()); ok {
		z, source = rz, fmt.Sprintf("%s (serial %d raised above the takeover's)", source, from)
	}
	_ = a.publish(ctx, z, source, o)
}

// accept runs the safety gates on a version and serves it if they pass:
// newer serial (RFC 1982), no doubled origin, change budget, DNSSEC, ... (see
// replicator/gates). The standby runs them again on what it pulls: a valid
// TSIG proves the sender, not the data (RIPE 2017). A blocked version is
// never served; the site keeps serving the last good one (.hk 2004). At the
// active site a frozen zone is not published at all until thawed.
func (a *Agent) accept(ctx context.Context, z *zone.Zone, source string, publishedAsIs bool) {
	o := publishOpts{}
	if publishedAsIs {
		o.skipGates = map[string]bool{"budget": true}
	}
	_ = a.publish(ctx, z, source, o)
}

// publishOpts loosen accept for an operator's explicit action.
type publishOpts struct {
	// bypassFreeze: a rollback publishes while the generator's output is
	// held by the freeze it set.
	bypassFreeze bool
	// skipGates: a rollback re-publishes a version that passed every gate
	// when it was accepted; its change against the bad version being
	// replaced is the point, so the budget gate is not asked.
	skipGates map[string]bool
	// expectedDelegations is the registry database's count for this
	// version (the generator's sidecar); nil skips reconciliation.
	expectedDelegations *int
}

// errNotServed is returned by publish when a version was held or blocked;
// the reason is in the zone's status.
var errNotServed = errors.New("version not served")

func (a *Agent) publish(ctx context.Context, z *zone.Zone, source string, o publishOpts) error {
	cur := a.dns.Zone(z.Origin)
	if cur != nil && cur.Serial == z.Serial && cur.Digest == z.Digest {
		return nil
	}
	if a.role() == "active" && a.fenced() {
		a.log.Warn("site fenced: version not published", "zone", z.Origin, "serial", z.Serial, "source", source)
		return fmt.Errorf("%w: site %s is fenced", errNotServed, a.site.Name)
	}
	if a.role() == "active" && a.isFrozen(z.Origin) && !o.bypassFreeze {
		a.mu.Lock()
		zs := a.zones[z.Origin]
		zs.Origin, zs.Frozen, zs.PendingSerial = z.Origin, true, z.Serial
		a.zones[z.Origin] = zs
		a.mu.Unlock()
		a.log.Warn("zone frozen: version held, not published", "zone", z.Origin, "serial", z.Serial, "source", source)
		return fmt.Errorf("%w: zone %s is frozen", errNotServed, z.Origin)
	}
	gl := a.gates
	if len(o.skipGates) > 0 {
		gl = nil
		for _, g := range a.gates {
			if !o.skipGates[g.Name()] {
				gl = append(gl, g)
			}
		}
	}
	in := &gates.Input{Zone: z, Previous: cur, Published: cur, Now: time.Now(),
		ExpectedDelegations: o.expectedDelegations, PreviousVerified: a.dnssecVerified(cur)}
	if c, ok := a.checkedVersion(cur); ok {
		in.PreviousIndex, in.PreviousPassed = c.ix, c.clean && len(o.skipGates) == 0
	}
	rep, ix := gates.RunIndexed(ctx, gl, in)
	var overriddenBy []string
	if !rep.Pass {
		// Two operators may have signed off this exact version (.se
		// 2009: never one person alone).
		if by, ok := a.overrideApproved(ctx, z); ok {
			overriddenBy = by
			rep.Pass = true
		}
	}
	if !rep.Pass {
		b := &status.BlockedVersion{Serial: z.Serial, Digest: z.Digest, Source: source, Gates: rep.Failed(), At: time.Now()}
		for _, r := range rep.Results {
			if r.Status != gates.StatusFail {
				continue
			}
			b.Findings = append(b.Findings, r.Gate+": "+r.Reason)
			for i, f := range r.Findings {
				if i == 3 {
					break
				}
				b.Findings = append(b.Findings, r.Gate+": "+f.String())
			}
		}
		a.mu.Lock()
		zs := a.zones[z.Origin]
		zs.Origin, zs.Blocked = z.Origin, b
		zs.Error = fmt.Sprintf("serial %d from %s blocked by %s", z.Serial, source, strings.Join(b.Gates, ", "))
		a.zones[z.Origin] = zs
		a.mu.Unlock()
		a.m.zoneBlocked.WithLabelValues(z.Origin).Inc()
		a.recordBlocked(ctx, z, source, o, b.Gates, b.Findings)
		a.log.Error("zone version blocked by the safety gates", "zone", z.Origin, "serial", z.Serial, "source", source,
			"gates", strings.Join(b.Gates, ","), "findings", strings.Join(b.Findings, "; "))
		return fmt.Errorf("%w: blocked by %s: %s", errNotServed, strings.Join(b.Gates, ", "), strings.Join(b.Findings, "; "))
	}
	if a.store != nil {
		by := "agent " + a.site.Name
		if overriddenBy != nil {
			by += " (two-person override: " + strings.Join(overriddenBy, ", ") + ")"
		}
		_, err := a.store.Put(z, zonestore.Manifest{Report: &rep, AcceptedAt: time.Now(), AcceptedBy: by, Source: source})
		if err != nil {
			// A version that cannot be kept cannot be rolled back to:
			// do not serve it.
			a.setZoneError(z.Origin, fmt.Errorf("serial %d from %s not stored: %w", z.Serial, source, err))
			a.log.Error("zone version not stored, not served", "zone", z.Origin, "serial", z.Serial, "err", err)
			return fmt.Errorf("%w: not stored: %v", errNotServed, err)
		}
	}
	a.dns.SetZone(z)
	a.keepChecked(z, ix, rep, overriddenBy == nil && len(o.skipGates) == 0)
	a.dropCandidate(z.Origin, z.Serial)
	if overriddenBy != nil {
		a.overridePublished(ctx, z, overriddenBy, rep.Failed())
	}
	a.mu.Lock()
	prev := a.zones[z.Origin]
	zs := status.ZoneState{Origin: z.Origin, Serial: z.Serial, Digest: z.Digest, Source: source, LoadedAt: time.Now()}
	// A rollback publishes through a freeze; what the freeze holds stays
	// held.
	zs.Frozen, zs.PendingSerial = prev.Frozen, prev.PendingSerial
	a.zones[z.Origin] = zs
	a.mu.Unlock()
	a.m.zoneSerial.WithLabelValues(z.Origin).Set(float64(z.Serial))
	a.log.Info("zone version serving", "zone", z.Origin, "serial", z.Serial, "source", source, "records", z.Len())
	if a.role() == "active" {
		if a.store != nil {
			if err := a.store.MarkPublished(z.Origin, z.Serial, time.Now()); err != nil {
				a.log.Error("mark published", "zone", z.Origin, "serial", z.Serial, "err", err)
			}
		}
		a.recordPublished(ctx, z, source)
		a.notify(ctx, z)
		go a.verifySecondaries(ctx, z)
	}
	return nil
}

// restoreFromStore serves the newest version the store holds for origin
// (the newest published one at an active site), after verifying its digest.
func (a *Agent) restoreFromStore(origin string) {
	if a.store == nil || a.dns.Zone(origin) != nil {
		return
	}
	m, err := a.store.Latest(origin)
	if a.role() == "active" {
		if pm, perr := a.store.LatestPublished(origin); perr == nil {
			m, err = pm, nil
		}
	}
	if err != nil {
		return
	}
	z, err := a.store.Load(m)
	if err != nil {
		a.setZoneError(origin, fmt.Errorf("stored serial %d unusable: %w", m.Serial, err))
		a.log.Error("stored zone version unusable", "zone", origin, "serial", m.Serial, "err", err)
		return
	}
	a.dns.SetZone(z)
	a.mu.Lock()
	a.zones[origin] = status.ZoneState{Origin: origin, Serial: z.Serial, Digest: z.Digest, Source: "store", LoadedAt: time.Now()}
	a.mu.Unlock()
	a.m.zoneSerial.WithLabelValues(origin).Set(float64(z.Serial))
	a.log.Info("zone version serving from the store", "zone", origin, "serial", z.Serial)
}

// isFrozen reports whether publication of origin is frozen (by zone or for
// all zones), as of the last etcd read.
func (a *Agent) isFrozen(origin string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range a.frozen {
		if f == "*" || f == dns.CanonicalName(origin) {
			return true
		}
	}
	return false
}

// thawed re-reads the generator files of zones that were held by a freeze
// that has since been lifted.
func (a *Agent) thawed(ctx context.Context) {
	for _, zc := range a.cfg.Zones {
		origin := dns.Fqdn(zc.Origin)
		a.mu.Lock()
		zs := a.zones[origin]
		held := zs.Frozen
		a.mu.Unlock()
		if !held || a.isFrozen(origin) {
			continue
		}
		a.mu.Lock()
		zs = a.zones[origin]
		zs.Frozen, zs.PendingSerial = false, 0
		a.zones[origin] = zs
		a.mu.Unlock()
		a.log.Info("zone thawed: publishing the held version", "zone", origin)
		a.loadFile(ctx, ZoneFile(a.site.ZoneDir, origin), true)
	}
}

func (a *Agent) setZoneError(origin string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	zs := a.zones[origin]
	zs.Origin = origin
	zs.Error = err.Error()
	a.zones[origin] = zs
}

// notify pushes the new serial to every secondary and the other sites'
// agents (RIPE 2017: push, do not poll, so a fix propagates in seconds).
func (a *Agent) notify(ctx context.Context, z *zone.Zone) {
	name, secret, err := a.tsigFor(z.Origin)
	if err != nil {
		a.log.Error("notify", "err", err)
		return
	}
	var targets []string
	for _, s := range a.cfg.Secondary {
		if s.Notify {
			targets = append(targets, s.Addr)
		}
	}
	for _, s := range a.cfg.Sites {
		if s.Name != a.site.Name && !s.Witness && s.DNSAddr != "" {
			targets = append(targets, s.DNSAddr)
		}
	}
	go func() {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var src netip.Addr
		if ap, err := netip.ParseAddrPort(a.site.DNSAddr); err == nil {
			src = ap.Addr()
		}
		for _, r := range zoneserve.NotifyFrom(nctx, src, targets, z.Origin, z.Serial, name, secret) {
			if r.Err != nil {
				a.log.Warn("notify not acknowledged", "zone", z.Origin, "serial", z.Serial, "target", r.Target, "err", r.Err)
			}
		}
	}()
}

// pullIfStandby transfers every zone from the active site when this site is
// the standby and the active site serves a newer serial.
func (a *Agent) pullIfStandby(ctx context.Context) {
	a.mu.Lock()
	role, active := a.st.Role, a.st.ActiveSite
	a.mu.Unlock()
	if role != "standby" {
		return
	}
	src, ok := a.cfg.Site(active)
	if !ok || src.DNSAddr == "" {
		return
	}
	for _, zc := range a.cfg.Zones {
		origin := dns.Fqdn(zc.Origin)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		serial, err := zonepull.QuerySerial(pctx, src.DNSAddr, origin)
		if err != nil {
			cancel()
			a.log.Debug("active site SOA", "zone", origin, "err", err)
			continue
		}
		if cur := a.dns.Zone(origin); cur != nil && !zone.SerialLess(cur.Serial, serial) {
			cancel()
			continue
		}
		name, secret, err := a.tsigFor(origin)
		if err != nil {
			cancel()
			a.log.Error("pull", "err", err)
			continue
		}
		// A difference applies only to the version it was made from:
		// IXFR when the active site recorded ours as published as is.
		cur := a.dns.Zone(origin)
		z, err := a.fetch(pctx, src.DNSAddr, origin, name, secret, cur, cur != nil && a.publishedAsIs(pctx, cur))
		if err == nil && z != cur && !a.indexAgrees(pctx, z) {
			// The difference led somewhere the active site never
			// published: take the whole zone instead.
			a.log.Warn("IXFR result differs from the published version: transferring the whole zone", "zone", origin, "serial", z.Serial)
			z, err = zonepull.Pull(pctx, src.DNSAddr, origin, name, secret)
		}
		cancel()
		if err != nil {
			a.setZoneError(origin, fmt.Errorf("pull from %s: %w", active, err))
			a.log.Warn("zone pull failed", "zone", origin, "from", active, "err", err)
			continue
		}
		a.accept(ctx, z, "axfr:"+active, a.publishedAsIs(ctx, z))
	}
}

// fetch transfers origin from the primary at addr: by IXFR from cur when
// trusted says cur is the primary's own version at its serial (then only
// the difference travels, applies to cur's storage, and is checked
// incrementally), by AXFR otherwise or when the IXFR fails.
func (a *Agent) fetch(ctx context.Context, addr, origin, name, secret string, cur *zone.Zone, trusted bool) (*zone.Zone, error) {
	if cur != nil && trusted {
		start := time.Now()
		z, incremental, err := zonepull.PullIXFR(ctx, addr, origin, name, secret, cur)
		if err == nil {
			a.log.Info("zone transferred", "zone", origin, "from", addr, "serial", z.Serial, "ixfr", incremental, "took", time.Since(start).Round(time.Millisecond))
			return z, nil
		}
		a.log.Warn("IXFR failed: transferring the whole zone", "zone", origin, "from", addr, "err", err)
	}
	return zonepull.Pull(ctx, addr, origin, name, secret)
}

// indexAgrees reports whether etcd's zone index has no other digest for
// z's serial than z's own (no entry, or no etcd, agrees).
func (a *Agent) indexAgrees(ctx context.Context, z *zone.Zone) bool {
	v, found, err := a.indexed(ctx, z)
	return err != nil || !found || v.Digest == z.Digest
}

// indexed is what etcd's zone index records for z's serial.
func (a *Agent) indexed(ctx context.Context, z *zone.Zone) (v store.PublishedVersion, found bool, err error) {
	if a.etcd == nil {
		return v, false, nil
	}
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, found, err = store.GetJSON(c, a.etcd, a.keys.ZoneVersion(z.Origin, z.Serial), &v)
	return v, found, err
}

// publishedAsIs reports whether the active site recorded exactly this
// version (serial and digest) as published in etcd's zone index. Its change
// budget was judged there against what was published before; a standby
// returning from an outage would otherwise judge it against its own stale
// copy and block it. Every other gate still runs here.
func (a *Agent) publishedAsIs(ctx context.Context, z *zone.Zone) bool {
	v, found, err := a.indexed(ctx, z)
	return err == nil && found && v.Digest == z.Digest && v.Serial == z.Serial
}

// dnssecVerified reports whether cur passed the dnssec gate when it was
// stored, so the gates verify only signatures that changed since. A version
// published by override after a dnssec failure keeps its failing result.
// checkedVersion is what this process knows of having checked a version.
type checkedVersion struct {
	zone  *zone.Zone
	ix    *gates.Index
	clean bool // every gate passed (or skipped) without a finding, no gate left out, no override
}

// checkedVersion returns what this process kept of checking cur.
func (a *Agent) checkedVersion(cur *zone.Zone) (checkedVersion, bool) {
	if cur == nil {
		return checkedVersion{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.checked[cur.Origin]
	return c, ok && c.zone == cur
}

// keepChecked keeps z's index and verdict for checking the next version
// incrementally; full is false when gates were left out or overridden.
func (a *Agent) keepChecked(z *zone.Zone, ix *gates.Index, rep gates.Report, full bool) {
	clean := full && rep.Pass
	for _, r := range rep.Results {
		clean = clean && r.Status != gates.StatusFail && r.Total == 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.checked == nil {
		a.checked = map[string]checkedVersion{}
	}
	if ix == nil {
		delete(a.checked, z.Origin)
		return
	}
	a.checked[z.Origin] = checkedVersion{zone: z, ix: ix, clean: clean}
}

func (a *Agent) dnssecVerified(cur *zone.Zone) bool {
	if cur == nil || a.store == nil {
		return false
	}
	m, err := a.store.Get(cur.Origin, cur.Serial)
	return err == nil && m.Digest == cur.Digest && m.Report != nil &&
		m.Report.Digest == cur.Digest && m.Report.Passed(gates.GateDNSSEC)
}

// pullFromSigner is the other source of versions at the active site: zones
// with `source: axfr` come by AXFR (TSIG) from the registry's own signer at
// source_addr, on its NOTIFY or the 10 s refresh, and go through the same
// gates as a generator's file.
func (a *Agent) pullFromSigner(ctx context.Context) {
	if a.role() != "active" {
		return
	}
	for _, zc := range a.cfg.Zones {
		if zc.Source != "axfr" {
			continue
		}
		origin := dns.Fqdn(zc.Origin)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		serial, err := zonepull.QuerySerial(pctx, zc.SourceAddr, origin)
		if err != nil {
			cancel()
			a.setZoneError(origin, fmt.Errorf("signer %s: %w", zc.SourceAddr, err))
			continue
		}
		cur := a.dns.Zone(origin)
		a.mu.Lock()
		c := a.candidates[origin]
		a.mu.Unlock()
		if (cur != nil && !zone.SerialLess(cur.Serial, serial)) || (c != nil && c.z.Serial == serial) {
			cancel()
			continue // served already, or blocked already (the recheck handles it)
		}
		name, secret, err := a.tsigFor(origin)
		if err != nil {
			cancel()
			a.log.Error("signer transfer", "err", err)
			continue
		}
		// IXFR when what we serve is the signer's own version (the
		// difference is made from it), else AXFR.
		a.mu.Lock()
		fromSigner := a.zones[origin].Source == "axfr:signer "+zc.SourceAddr
		a.mu.Unlock()
		z, err := a.fetch(pctx, zc.SourceAddr, origin, name, secret, cur, fromSigner)
		cancel()
		if err != nil {
			a.setZoneError(origin, fmt.Errorf("transfer from the signer %s: %w", zc.SourceAddr, err))
			a.log.Warn("transfer from the signer failed", "zone", origin, "signer", zc.SourceAddr, "err", err)
			continue
		}
		_ = a.publish(ctx, z, "axfr:signer "+zc.SourceAddr, publishOpts{expectedDelegations: a.reconcileCount(ctx)})
	}
}

// reconcileCount runs gates.reconcile_query on the site's registry
// database: the delegation count the zone must match (.hk 2004). nil when
// no query is configured or the database cannot answer (the gate then
// says it was skipped, never passed). The count is taken when the version
// is judged, so a busy registry needs gates.reconcile_tolerance for the
// writes between the signer's snapshot and this query; a generator that
// writes a sidecar (the lab's) gives its snapshot's exact count instead.
func (a *Agent) reconcileCount(ctx context.Context) *int {
	q := a.cfg.Gates.ReconcileQuery
	if q == "" || a.pool == nil {
		return nil
	}
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n int64
	if err := a.pool.QueryRow(c, q).Scan(&n); err != nil {
		a.log.Warn("reconcile query failed: version judged without it", "err", err)
		return nil
	}
	v := int(n)
	return &v
}
