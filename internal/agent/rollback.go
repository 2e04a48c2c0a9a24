package agent

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/zone"
)

func (a *Agent) rollbackPending(ctx context.Context) bool {
	if a.store == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	for _, zc := range a.cfg.Zones {
		r, _, found, err := store.GetRollback(ctx, a.etcd, a.keys, zc.Origin)
		if err == nil && found && !r.Done {
			return true
		}
	}
	return false
}

// rollbacks carries out pending rollback requests at the active site: the
// stored version is re-published under a serial above the one served, so
// secondaries take it (.hk 2004: re-activate the last known-good zone).
func (a *Agent) rollbacks(ctx context.Context) {
	if a.role() != "active" || a.store == nil {
		return
	}
	for _, zc := range a.cfg.Zones {
		origin := dns.Fqdn(zc.Origin)
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, rev, found, err := store.GetRollback(ectx, a.etcd, a.keys, origin)
		cancel()
		if err != nil || !found || r.Done {
			continue
		}
		newSerial, rerr := a.rollback(ctx, origin, r.ToSerial)
		r.Site = a.site.Name
		result := "ok"
		if rerr != nil {
			r.Error, result = rerr.Error(), "failed"
			a.log.Error("rollback failed", "zone", origin, "to", r.ToSerial, "err", rerr)
		} else {
			r.NewSerial = newSerial
			a.log.Info("rollback published", "zone", origin, "to", r.ToSerial, "serial", newSerial, "by", r.By)
		}
		ectx, cancel = context.WithTimeout(ctx, 5*time.Second)
		if err := store.FinishRollback(ectx, a.etcd, a.keys, r, rev); err != nil {
			a.log.Error("record rollback outcome", "zone", origin, "err", err)
		}
		_, _ = audit.New(a.etcd, a.keys).Append(ectx, audit.Entry{
			Who: "agent " + a.site.Name, Action: "zone.rollback", Target: origin, Result: result,
			Detail: map[string]string{"id": r.ID, "requested_by": r.By, "to_serial": strconv.FormatUint(uint64(r.ToSerial), 10),
				"new_serial": strconv.FormatUint(uint64(newSerial), 10)},
		})
		cancel()
	}
}

func (a *Agent) rollback(ctx context.Context, origin string, to uint32) (uint32, error) {
	m, err := a.store.Get(origin, to)
	if err != nil {
		return 0, fmt.Errorf("site %s has no stored version %d of %s: %w", a.site.Name, to, origin, err)
	}
	old, err := a.store.Load(m)
	if err != nil {
		return 0, err
	}
	cur := a.dns.Zone(origin)
	serial := uint32(time.Now().Unix())
	if cur != nil && !zone.SerialLess(cur.Serial, serial) {
		serial = cur.Serial + 1
	}
	z, err := a.resign(old, serial)
	if err != nil {
		return 0, err
	}
	err = a.publish(ctx, z, "rollback:"+strconv.FormatUint(uint64(to), 10), publishOpts{bypassFreeze: true, skipGates: map[string]bool{"budget": true}})
	if err != nil {
		return 0, err
	}
	return serial, nil
}
