package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys"
	"github.com/regdr/regdr/keys/bundle"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/replicator/zonestore"
)

// BundleKeyCheck checks the key bundles addressed to site as of the
// restore point: the newest bundle from each sender at or before it must
// verify (signature by the sender's key in the config) and decrypt with
// site's identity, and together they must hold every DNSKEY of the zone
// version published then. A DR site whose bundles do not open, or lack a
// key the zone was signed with, could not have signed that zone (.se
// 2009).
//
// Opened bundles are deleted by the receiver once installed; with none
// left in etcd the check falls back to the keys they installed: every
// DNSKEY must be in site's key directory with a private key that signs
// for it (inventory state ok), and the detail says so.
//
// It is unknown, never passed, when there is nothing to check: no keys
// section in the config or an unsigned zone.
func BundleKeyCheck(cli *clientv3.Client, cfg *config.Config, site string, zs *zonestore.Store, origin string) KeyCheck {
	return func(ctx context.Context, at time.Time) (string, error) {
		if cfg.Keys == nil {
			return "", errUnknown{"key transport is not configured (no keys section): key bundles not checked"}
		}
		origin := dns.CanonicalName(dns.Fqdn(origin))
		m, _, err := publishedAsOf(zs, origin, at)
		if err != nil {
			return "", fmt.Errorf("zone version to match keys against: %w", err)
		}
		z, err := zs.Load(m)
		if err != nil {
			return "", err
		}
		want := map[string]uint16{} // digest -> tag
		for _, rr := range z.All() {
			if k, ok := rr.(*dns.DNSKEY); ok {
				want[inventory.Digest(k)] = k.KeyTag()
			}
		}
		if len(want) == 0 {
			return "", errUnknown{fmt.Sprintf("%s serial %d is unsigned: no DNSKEY to match key bundles against", origin, z.Serial)}
		}
		max := bundle.DefaultMaxBytes
		if cfg.Keys.BundleMaxBytes > 0 {
			max = cfg.Keys.BundleMaxBytes
		}
		resp, err := cli.Get(ctx, keys.PathsFor(store.Keys{Prefix: cfg.Etcd.Prefix}).Bundles(site), clientv3.WithPrefix())
		if err != nil {
			return "", fmt.Errorf("read key bundles for %s: %w", site, err)
		}
		newest := map[string]*bundle.Sealed{}
		for _, kv := range resp.Kvs {
			s, err := bundle.Decode(kv.Value, max)
			if err != nil {
				return "", fmt.Errorf("key bundle %s: %w", kv.Key, err)
			}
			if s.Header.Time.After(at) {
				continue
			}
			if cur, ok := newest[s.Header.From]; !ok || s.Header.Seq > cur.Header.Seq {
				newest[s.Header.From] = s
			}
		}
		if len(newest) == 0 {
			// The receiver deletes a bundle once it has installed its
			// keys and proved them: what the bundles carried is then
			// in the site's key directory.
			return installedKeys(ctx, cfg, site, origin, z.Serial, want)
		}
		id, err := keys.LoadIdentity(cfg, site)
		if err != nil {
			return "", err
		}
		have := map[string]bool{}
		var from []string
		for sender, s := range newest {
			if err := s.Verify(site, keys.Signers(cfg), 0); err != nil {
				return "", fmt.Errorf("key bundle from %s seq %d: %w", sender, s.Header.Seq, err)
			}
			pairs, err := s.Decrypt(id.Age, max)
			if err != nil {
				return "", fmt.Errorf("key bundle from %s seq %d: %w", sender, s.Header.Seq, err)
			}
			for _, p := range pairs {
				dk, err := inventory.ParseDNSKEY(p.Public, p.Key.Name)
				if err != nil {
					return "", fmt.Errorf("key bundle from %s seq %d: %w", sender, s.Header.Seq, err)
				}
				have[inventory.Digest(dk)] = true
			}
			from = append(from, fmt.Sprintf("%s seq %d", sender, s.Header.Seq))
		}
		slices.Sort(from)
		var missing []string
		for d, tag := range want {
			if !have[d] {
				missing = append(missing, fmt.Sprint(tag))
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return "", fmt.Errorf("DNSKEY tags %s of %s serial %d are in no key bundle %s held at %s (bundles: %s)",
				strings.Join(missing, ", "), origin, z.Serial, site, at.Format(time.RFC3339), strings.Join(from, ", "))
		}
		return fmt.Sprintf("%d DNSKEYs of %s serial %d are in the key bundles (%s), which verify and decrypt",
			len(want), origin, z.Serial, strings.Join(from, ", ")), nil
	}
}

func installedKeys(ctx context.Context, cfg *config.Config, site, origin string, serial uint32, want map[string]uint16) (string, error) {
	s, ok := cfg.Site(site)
	if !ok || s.KeyDir == "" {
		return "", errUnknown{fmt.Sprintf("no key bundle addressed to %s and no key_dir to look in", site)}
	}
	ks, err := inventory.Dir{Path: cfg.Resolve(s.KeyDir)}.List(ctx, origin)
	if err != nil {
		return "", err
	}
	ok2 := map[string]bool{}
	for _, k := range ks {
		if k.State == inventory.StateOK {
			ok2[k.Digest] = true
		}
	}
	var missing []string
	for d, tag := range want {
		if !ok2[d] {
			missing = append(missing, fmt.Sprint(tag))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return "", fmt.Errorf("DNSKEY tags %s of %s serial %d are neither in a key bundle for %s nor installed there with a matching private key",
			strings.Join(missing, ", "), origin, serial, site)
	}
	return fmt.Sprintf("bundles already opened and removed from etcd; all %d DNSKEYs of %s serial %d are installed at %s and each private key signs for its DNSKEY",
		len(want), origin, serial, site), nil
}
