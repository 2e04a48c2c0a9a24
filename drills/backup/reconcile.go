package backup

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonegen"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonestore"
)

// delegationSet is, per delegated name (lower case, absolute), its NS
// targets and DS records as sorted canonical text. Signatures, NSEC and
// glue are not part of it: the comparison is about what the registry
// delegates.
type delegationSet map[string][]string

// delegationsOf is the delegationSet of origin in rrs. It takes a
// sequence so that a stored zone is walked, not copied into a slice first
// (it may hold millions of records).
func delegationsOf(rrs iter.Seq2[int, dns.RR], origin string) delegationSet {
	out := delegationSet{}
	for _, rr := range rrs {
		owner := strings.ToLower(rr.Header().Name)
		if owner == origin {
			continue
		}
		switch x := rr.(type) {
		case *dns.NS:
			out[owner] = append(out[owner], "NS "+strings.ToLower(x.Ns))
		case *dns.DS:
			out[owner] = append(out[owner], fmt.Sprintf("DS %d %d %d %s", x.KeyTag, x.Algorithm, x.DigestType, strings.ToUpper(x.Digest)))
		}
	}
	for k, v := range out {
		slices.Sort(v)
		out[k] = slices.Compact(v)
	}
	return out
}

// diffDelegations describes how got differs from want ("" when equal),
// naming at most a few names of each kind.
func diffDelegations(got, want delegationSet) string {
	var missing, extra, changed []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case !slices.Equal(g, w):
			changed = append(changed, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			extra = append(extra, name)
		}
	}
	var parts []string
	for _, d := range []struct {
		what  string
		names []string
	}{{"missing from the restored registry", missing}, {"only in the restored registry", extra}, {"with other NS/DS", changed}} {
		if len(d.names) == 0 {
			continue
		}
		slices.Sort(d.names)
		shown := d.names[:min(5, len(d.names))]
		parts = append(parts, fmt.Sprintf("%d delegations %s (%s)", len(d.names), d.what, strings.Join(shown, ", ")))
	}
	return strings.Join(parts, "; ")
}

// publishedAsOf is the zone version the verifying site's store says was
// published at t. The active site marks versions published as it serves
// them; a standby's store holds what it accepted from the active site
// (each one published there first), so for a store with no publications
// at all the newest version accepted by t stands in, and the detail says
// so.
func publishedAsOf(st *zonestore.Store, origin string, t time.Time) (zonestore.Manifest, string, error) {
	m, err := st.PublishedAsOf(origin, t)
	if err == nil {
		return m, "published", nil
	}
	if !errors.Is(err, zonestore.ErrNotFound) {
		return zonestore.Manifest{}, "", err
	}
	ms, lerr := st.List(origin)
	if lerr != nil {
		return zonestore.Manifest{}, "", lerr
	}
	for _, x := range ms {
		if x.Published {
			return zonestore.Manifest{}, "", err // this store publishes: trust its answer
		}
	}
	var best zonestore.Manifest
	found := false
	for _, x := range ms {
		if !x.AcceptedAt.After(t) && strings.HasPrefix(x.Source, "axfr:") && (!found || !x.AcceptedAt.Before(best.AcceptedAt)) {
			best, found = x, true
		}
	}
	if !found {
		return zonestore.Manifest{}, "", err
	}
	return best, "accepted from " + strings.TrimPrefix(best.Source, "axfr:"), nil
}

// zone rebuilds the zone from the restored registry with the lab's
// generator (zonegen.ReadSnapshot + Build) and compares its delegations
// with the version published at the restore point. "No version published
// then" is a failure: a backup that cannot be checked is not verified.
func (r *run) zone(ctx context.Context) (string, error) {
	if r.o.ZoneStore == nil || r.o.Zone == "" {
		return "", errors.New("no zone store or zone configured to reconcile against")
	}
	origin := dns.CanonicalName(dns.Fqdn(r.o.Zone))
	at := r.v.RestorePoint
	var m zonestore.Manifest
	var how string
	var err error
	// The deployment's own record of what was published then (whichever
	// site was active) comes first; a site's store alone cannot tell once
	// the active site has moved.
	if r.o.PublishedAt != nil {
		if pv, found, perr := r.o.PublishedAt(ctx, origin, at); perr == nil && found {
			if lm, gerr := r.o.ZoneStore.Get(origin, pv.Serial); gerr == nil && lm.Digest == pv.Digest {
				m, how = lm, fmt.Sprintf("published by %s at %s (zone index)", pv.Site, pv.Published.Format(time.RFC3339))
			}
		}
	}
	if how == "" {
		m, how, err = publishedAsOf(r.o.ZoneStore, origin, at)
	}
	if err != nil {
		if errors.Is(err, zonestore.ErrNotFound) {
			return "", fmt.Errorf("no zone version of %s published as of %s at site %s: %w", origin, at.Format(time.RFC3339), r.o.Site, err)
		}
		return "", err
	}
	pub, err := r.o.ZoneStore.Load(m)
	if err != nil {
		return "", err
	}
	c, err := pgx.Connect(ctx, r.sc.connString(registryDB))
	if err != nil {
		return "", fmt.Errorf("connect to restored registry: %w", err)
	}
	defer closeConn(ctx, c)
	snap, err := zonegen.ReadSnapshot(ctx, c, origin)
	if err != nil {
		return "", err
	}
	rrs, err := zonegen.Build(snap, zonegen.Params{Origin: origin, Serial: pub.Serial, ApexNS: apexNS(pub, origin)})
	if err != nil {
		return "", fmt.Errorf("rebuild zone from restored registry: %w", err)
	}
	got, want := delegationsOf(slices.All(rrs), origin), delegationsOf(pub.All(), origin)
	if d := diffDelegations(got, want); d != "" {
		return "", fmt.Errorf("zone rebuilt from the restored registry differs from %s serial %d (%s at %s): %s",
			origin, pub.Serial, how, at.Format(time.RFC3339), d)
	}
	return fmt.Sprintf("%d delegations match %s serial %d (%s as of %s)", len(got), origin, pub.Serial, how, at.Format(time.RFC3339)), nil
}

func apexNS(z *zone.Zone, origin string) []string {
	var out []string
	for _, rr := range z.All() {
		if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, origin) {
			out = append(out, ns.Ns)
		}
	}
	if len(out) == 0 {
		out = []string{"ns." + origin} // Build needs one; apex NS are not compared
	}
	slices.Sort(out)
	return slices.Compact(out)
}
