package agent

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/zone"
)

// overrideWindow is how long approvals of a blocked version may be given:
// long enough to reach a second person at night, short enough that a
// forgotten block is not approved days later against a changed registry.
const overrideWindow = 24 * time.Hour

// candidate is a version the gates refused, kept so that new facts (key
// proofs, two approvals) can let it through without the generator writing
// it again.
type candidate struct {
	z      *zone.Zone
	source string
	o      publishOpts
	gates  []string
}

// recordBlocked remembers a refused version and, at the active site,
// publishes it in etcd for operators to inspect and approve.
func (a *Agent) recordBlocked(ctx context.Context, z *zone.Zone, source string, o publishOpts, failed, findings []string) {
	a.mu.Lock()
	if a.candidates == nil {
		a.candidates = map[string]*candidate{}
	}
	a.candidates[z.Origin] = &candidate{z: z, source: source, o: o, gates: failed}
	a.mu.Unlock()
	if a.role() != "active" || a.etcd == nil {
		return
	}
	now := time.Now().UTC()
	b := store.BlockedVersion{Zone: z.Origin, Serial: z.Serial, Digest: z.Digest, Source: source, Site: a.site.Name,
		Gates: failed, Findings: findings, At: now, Expires: now.Add(overrideWindow)}
	ectx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := store.PutBlocked(ectx, a.etcd, a.keys, b); err != nil {
		a.log.Warn("record blocked version in etcd", "zone", z.Origin, "serial", z.Serial, "err", err)
	}
}

// overrideApproved reports whether two operators approved publishing this
// exact version (zone, serial, digest) in etcd, and who.
func (a *Agent) overrideApproved(ctx context.Context, z *zone.Zone) ([]string, bool) {
	if a.etcd == nil {
		return nil, false
	}
	ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, _, found, err := store.GetBlocked(ectx, a.etcd, a.keys, z.Origin)
	if err != nil || !found || b.Serial != z.Serial || b.Digest != z.Digest {
		return nil, false
	}
	s := approval.ZoneOverride(b)
	list, err := approval.List(ectx, a.etcd, a.keys, s)
	if err != nil || len(list) < approval.OverrideApprovers {
		return nil, false
	}
	v, err := approval.Check(s, list, a.cfg.Operators, approval.OverrideApprovers, time.Now())
	if err != nil {
		return nil, false
	}
	return v.Approvers, true
}

// overridePublished closes the blocked record and audits the override.
func (a *Agent) overridePublished(ctx context.Context, z *zone.Zone, approvers, gates []string) {
	a.log.Warn("blocked zone version published by two-person override", "zone", z.Origin, "serial", z.Serial,
		"approvers", strings.Join(approvers, ","), "gates", strings.Join(gates, ","))
	if a.role() != "active" {
		return
	}
	ectx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if b, rev, found, err := store.GetBlocked(ectx, a.etcd, a.keys, z.Origin); err == nil && found && b.Serial == z.Serial {
		if err := store.MarkBlockedPublished(ectx, a.etcd, a.keys, b, rev, approvers); err != nil {
			a.log.Warn("mark override published", "zone", z.Origin, "err", err)
		}
	}
	_, err := audit.New(a.etcd, a.keys).Append(ectx, audit.Entry{
		Who: "agent " + a.site.Name, Action: "zone.override", Target: z.Origin, Result: "ok",
		Detail: map[string]string{"serial": strconv.FormatUint(uint64(z.Serial), 10), "digest": z.Digest,
			"approvers": strings.Join(approvers, ","), "gates": strings.Join(gates, ",")},
	})
	if err != nil {
		a.log.Error("audit override", "zone", z.Origin, "err", err)
	}
}

// requestRecheck asks the zone loop to run the gates again on the newest
// blocked candidate (new key proofs or approvals may now let it pass).
func (a *Agent) requestRecheck() {
	select {
	case a.recheck <- struct{}{}:
	default:
	}
}

// pendingCandidates reports whether any version waits for a recheck.
func (a *Agent) pendingCandidates() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.candidates) > 0
}

// recheckCandidates runs publish again on every kept candidate.
func (a *Agent) recheckCandidates(ctx context.Context) {
	a.mu.Lock()
	var cs []*candidate
	for _, c := range a.candidates {
		cs = append(cs, c)
	}
	a.mu.Unlock()
	for _, c := range cs {
		_ = a.publish(ctx, c.z, c.source, c.o)
	}
}

// dropCandidate forgets candidates superseded by a served serial.
func (a *Agent) dropCandidate(origin string, served uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.candidates[origin]; ok && !zone.SerialLess(served, c.z.Serial) {
		delete(a.candidates, origin)
	}
}

// anyCandidateApproved is the tick's cheap look at whether approvals
// arrived for a kept candidate.
func (a *Agent) anyCandidateApproved(ctx context.Context) bool {
	if !a.pendingCandidates() {
		return false
	}
	a.mu.Lock()
	var zs []*zone.Zone
	for _, c := range a.candidates {
		zs = append(zs, c.z)
	}
	a.mu.Unlock()
	for _, z := range zs {
		if _, ok := a.overrideApproved(ctx, z); ok {
			return true
		}
	}
	return false
}
