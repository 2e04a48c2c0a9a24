package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonepull"
)

// recordPublished keeps the zone index in etcd: what was published last
// survives the loss of any one site's disk.
func (a *Agent) recordPublished(ctx context.Context, z *zone.Zone, source string) {
	if a.etcd == nil {
		return
	}
	a.mu.Lock()
	epoch := a.st.Epoch
	a.mu.Unlock()
	ectx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := store.RecordPublished(ectx, a.etcd, a.keys, store.PublishedVersion{
		Zone: z.Origin, Serial: z.Serial, Digest: z.Digest, Site: a.site.Name, Epoch: epoch,
		Published: time.Now().UTC(), Source: source,
	})
	if err != nil {
		a.log.Warn("zone index in etcd not updated", "zone", z.Origin, "serial", z.Serial, "err", err)
	}
}

// coldStart runs when this site has no stored version of origin. If etcd
// says the zone was published before, the site's store was lost (RIPE
// 2012: the zone files and their backups were gone). The active site then
// freezes the zone, so nothing the generator writes next goes out
// unchecked against what was published, and fetches the last published
// version back from the other site, gated as usual. An operator thaws
// once the generator's output has been checked.
func (a *Agent) coldStart(ctx context.Context, origin string) {
	if a.etcd == nil || a.role() != "active" {
		return
	}
	ectx, cancel := context.WithTimeout(ctx, 3*time.Second)
	last, found, err := store.LastPublished(ectx, a.etcd, a.keys, origin)
	cancel()
	if err != nil || !found {
		return
	}
	reason := fmt.Sprintf("cold-start: site %s has no stored version of %s but serial %d was published %s; fetched the last published version back, check the generator's output, then thaw",
		a.site.Name, origin, last.Serial, last.Published.Format(time.RFC3339))
	ectx, cancel = context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	f := store.Freeze{Zone: store.CanonicalZone(origin), Reason: reason, By: "agent " + a.site.Name, Since: time.Now().UTC()}
	if err := store.CreateJSON(ectx, a.etcd, a.keys.Freeze(origin), f); err != nil {
		a.log.Warn("cold-start freeze", "zone", origin, "err", err)
	}
	a.mu.Lock()
	a.frozen = append(a.frozen, store.CanonicalZone(origin))
	a.mu.Unlock()
	_, _ = audit.New(a.etcd, a.keys).Append(ectx, audit.Entry{Who: "agent " + a.site.Name, Action: "zone.freeze",
		Target: origin, Result: "ok", Detail: map[string]string{"reason": reason}})
	a.log.Error("zone store empty at the active site: zone frozen (cold-start)", "zone", origin, "last_published", last.Serial)

	for _, s := range a.cfg.DataSites() {
		if s.Name == a.site.Name || s.DNSAddr == "" {
			continue
		}
		name, secret, err := a.tsigFor(origin)
		if err != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		z, err := zonepull.Pull(pctx, s.DNSAddr, origin, name, secret)
		cancel()
		if err != nil {
			a.log.Warn("cold-start: fetch from the other site", "zone", origin, "site", s.Name, "err", err)
			continue
		}
		if z.Serial != last.Serial || z.Digest != last.Digest {
			a.log.Warn("cold-start: the other site holds another version than the last published", "zone", origin,
				"site", s.Name, "serial", z.Serial, "published", last.Serial)
		}
		// The published version again, not new content: it may go out
		// through the freeze, after the gates.
		if err := a.publish(ctx, z, "cold-start:"+s.Name, publishOpts{bypassFreeze: true}); err == nil {
			return
		}
	}
}
