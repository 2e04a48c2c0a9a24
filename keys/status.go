package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/keys/proof"
)

// Inventory is a site's published list of keys: public facts only.
type Inventory struct {
	Site  string          `json:"site"`
	Time  time.Time       `json:"time"`
	Keys  []inventory.Key `json:"keys"`
	Error string          `json:"error,omitempty"`
}

// PublishInventory stores a site's inventory in etcd for `keys status`.
func PublishInventory(ctx context.Context, kv clientv3.KV, keys store.Keys, inv Inventory) error {
	b, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("encode inventory of %s: %w", inv.Site, err)
	}
	if _, err := kv.Put(ctx, PathsFor(keys).Inventory(inv.Site), string(b)); err != nil {
		return fmt.Errorf("publish inventory of %s: %w", inv.Site, err)
	}
	return nil
}

// ListAll lists every configured zone's keys in a backend.
func ListAll(ctx context.Context, cfg *config.Config, b inventory.Backend) ([]inventory.Key, error) {
	var out []inventory.Key
	for _, z := range cfg.Zones {
		ks, err := b.List(ctx, store.CanonicalZone(z.Origin))
		if err != nil {
			return out, err
		}
		out = append(out, ks...)
	}
	return out, nil
}

// SiteKey is one key's state at one site.
type SiteKey struct {
	Site   string    `json:"site"`
	State  string    `json:"state"`
	Detail string    `json:"detail,omitempty"`
	Proved time.Time `json:"proved,omitempty"`
}

// KeyStatus is one key (by public key digest) across the data sites.
type KeyStatus struct {
	Zone      string    `json:"zone"`
	Tag       uint16    `json:"tag"`
	Algorithm uint8     `json:"algorithm"`
	KSK       bool      `json:"ksk"`
	Digest    string    `json:"digest"`
	Sites     []SiteKey `json:"sites"`
}

// Overview is what `regdr keys status` shows.
type Overview struct {
	Keys []KeyStatus `json:"keys"`
	// Inventories says when each site last published its inventory.
	Inventories map[string]time.Time `json:"inventories"`
}

// Status merges the sites' published inventories and receipts into one
// row per key: per data site present / verified / missing / mismatch.
// Receipts are checked (signature against the config, digest); a key a
// site holds whose private half does not match is mismatch.
func Status(ctx context.Context, kv clientv3.KV, keys store.Keys, cfg *config.Config) (Overview, error) {
	p := PathsFor(keys)
	ov := Overview{Inventories: map[string]time.Time{}}
	invs := map[string]map[string]inventory.Key{} // site → digest → key
	resp, err := kv.Get(ctx, p.Inventories(), clientv3.WithPrefix())
	if err != nil {
		return ov, fmt.Errorf("read key inventories: %w", err)
	}
	rows := map[string]*KeyStatus{}
	add := func(k inventory.Key) {
		if _, ok := rows[k.Digest]; !ok {
			rows[k.Digest] = &KeyStatus{Zone: k.Zone, Tag: k.Tag, Algorithm: k.Algorithm, KSK: k.KSK, Digest: k.Digest}
		}
	}
	for _, kvp := range resp.Kvs {
		var inv Inventory
		if err := json.Unmarshal(kvp.Value, &inv); err != nil {
			continue
		}
		ov.Inventories[inv.Site] = inv.Time
		m := map[string]inventory.Key{}
		for _, k := range inv.Keys {
			m[k.Digest] = k
			add(k)
		}
		invs[inv.Site] = m
	}
	receipts := map[string]map[string]proof.Receipt{} // site → digest → receipt
	bad := map[string]map[string]string{}             // site → zone/tag → why
	signers := Signers(cfg)
	rr, err := kv.Get(ctx, p.AllReceipts(), clientv3.WithPrefix())
	if err != nil {
		return ov, fmt.Errorf("read receipts: %w", err)
	}
	for _, kvp := range rr.Kvs {
		rest := strings.TrimPrefix(string(kvp.Key), p.AllReceipts())
		site, zoneTag, _ := strings.Cut(rest, "/")
		var s proof.Signed
		if json.Unmarshal(kvp.Value, &s) != nil {
			continue
		}
		pk, ok := signers(site)
		if !ok {
			continue
		}
		r, err := proof.Open(s, site, pk)
		if err != nil {
			if bad[site] == nil {
				bad[site] = map[string]string{}
			}
			bad[site][zoneTag] = err.Error()
			continue
		}
		if receipts[site] == nil {
			receipts[site] = map[string]proof.Receipt{}
		}
		receipts[site][r.Digest] = r
	}
	for _, row := range rows {
		for _, s := range cfg.DataSites() {
			sk := SiteKey{Site: s.Name, State: StateMissing}
			k, held := invs[s.Name][row.Digest]
			r, proved := receipts[s.Name][row.Digest]
			switch {
			case held && k.State == inventory.StateMismatch:
				sk.State, sk.Detail = StateMismatch, k.Problem
			case proved:
				sk.State, sk.Detail, sk.Proved = StateVerified, "against "+r.Against+" "+r.AgainstDetail, r.Time
			case held:
				sk.State = StatePresent
			default:
				// A receipt for the same zone and tag but another key:
				// the site holds a different key under this tag.
				for _, other := range receipts[s.Name] {
					if other.Zone == row.Zone && other.Tag == row.Tag {
						sk.State, sk.Detail = StateMismatch, fmt.Sprintf("site proved a different key with tag %d (digest %.12s)", row.Tag, other.Digest)
					}
				}
				if why, ok := bad[s.Name][fmt.Sprintf("%s/%05d", url.PathEscape(store.CanonicalZone(row.Zone)), row.Tag)]; ok {
					sk.State, sk.Detail = StateMismatch, why
				}
			}
			row.Sites = append(row.Sites, sk)
		}
		ov.Keys = append(ov.Keys, *row)
	}
	sort.Slice(ov.Keys, func(i, j int) bool {
		a, b := ov.Keys[i], ov.Keys[j]
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		if a.KSK != b.KSK {
			return a.KSK
		}
		if a.Tag != b.Tag {
			return a.Tag < b.Tag
		}
		return a.Digest < b.Digest
	})
	return ov, nil
}
