package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ZonePublished(zone) is the last version the active site published. It
// outlives any one site's disk: a site whose zone store is lost (RIPE
// 2012) learns from it what it must serve again, and the failover
// preflight checks the target holds at least this serial.
func (k Keys) ZonePublished(zone string) string {
	return k.p() + "/zones/" + url.PathEscape(CanonicalZone(zone)) + "/published"
}

// PublishedVersion is one entry of the zone index in etcd.
type PublishedVersion struct {
	Zone      string    `json:"zone"`
	Serial    uint32    `json:"serial"`
	Digest    string    `json:"digest"`
	Site      string    `json:"site"`
	Epoch     uint64    `json:"epoch"`
	Published time.Time `json:"published"`
	Source    string    `json:"source"`
}

// indexKeep is how many versions the etcd index keeps per zone; the full
// history stays in each site's zone store.
const indexKeep = 200

// RecordPublished writes v as the zone's last published version and into
// the version index, and trims the index to its newest indexKeep entries.
func RecordPublished(ctx context.Context, kv clientv3.KV, keys Keys, v PublishedVersion) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = kv.Txn(ctx).Then(
		clientv3.OpPut(keys.ZonePublished(v.Zone), string(b)),
		clientv3.OpPut(keys.ZoneVersion(v.Zone, v.Serial), string(b)),
	).Commit()
	if err != nil {
		return fmt.Errorf("record published %s serial %d: %w", v.Zone, v.Serial, err)
	}
	if v.Serial%16 != 0 {
		return nil
	}
	resp, err := kv.Get(ctx, keys.ZoneVersions(v.Zone), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend))
	if err != nil || len(resp.Kvs) <= indexKeep {
		return nil
	}
	for _, kvp := range resp.Kvs[indexKeep:] {
		if _, err := kv.Delete(ctx, string(kvp.Key)); err != nil {
			return nil
		}
	}
	return nil
}

// LastPublished reads the zone's last published version.
func LastPublished(ctx context.Context, kv clientv3.KV, keys Keys, zone string) (PublishedVersion, bool, error) {
	var v PublishedVersion
	_, found, err := GetJSON(ctx, kv, keys.ZonePublished(zone), &v)
	return v, found, err
}

// PublishedAsOf returns the version of zone the deployment had published
// at t, whichever site published it: the index entry with the latest
// publication time not after t. found is false when the index holds none
// that early (it keeps the newest indexKeep versions).
func PublishedAsOf(ctx context.Context, kv clientv3.KV, keys Keys, zone string, t time.Time) (PublishedVersion, bool, error) {
	resp, err := kv.Get(ctx, keys.ZoneVersions(zone), clientv3.WithPrefix())
	if err != nil {
		return PublishedVersion{}, false, fmt.Errorf("read the zone index of %s: %w", zone, err)
	}
	var best PublishedVersion
	found := false
	for _, kvp := range resp.Kvs {
		var v PublishedVersion
		if json.Unmarshal(kvp.Value, &v) != nil || v.Published.After(t) {
			continue
		}
		if !found || v.Published.After(best.Published) {
			best, found = v, true
		}
	}
	return best, found, nil
}
