package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Freeze stops distribution of a zone, or of every zone (Zone ""), while
// it exists: during maintenance, a cold start, a restore or a failover
// (INCIDENTS.md 2 and 3). Who froze and why are required, so a frozen zone
// always says whom to ask.
type Freeze struct {
	Zone   string    `json:"zone"` // canonical (CanonicalZone); "" = all zones
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	Since  time.Time `json:"since"`
}

// PutFreeze creates or replaces the freeze for f.Zone. To freeze only if
// not frozen already (and so know whether a thaw is yours to do), use
// CreateJSON on keys.Freeze(zone) instead.
func PutFreeze(ctx context.Context, kv clientv3.KV, keys Keys, f Freeze) error {
	f.Zone = CanonicalZone(f.Zone)
	key := keys.Freeze(f.Zone)
	if f.Reason == "" || f.By == "" {
		return fmt.Errorf("freeze %s: reason and by are required", key)
	}
	if f.Since.IsZero() {
		return fmt.Errorf("freeze %s: since is unset", key)
	}
	f.Since = f.Since.UTC()
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := kv.Put(ctx, key, string(b)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// DeleteFreeze removes the freeze for zone ("" = the all-zones freeze).
// existed reports whether there was one.
func DeleteFreeze(ctx context.Context, kv clientv3.KV, keys Keys, zone string) (existed bool, err error) {
	key := keys.Freeze(zone)
	resp, err := kv.Delete(ctx, key)
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	return resp.Deleted > 0, nil
}

// ListFreezes returns every freeze, the all-zones freeze first, then by
// zone name.
func ListFreezes(ctx context.Context, kv clientv3.KV, keys Keys) ([]Freeze, error) {
	prefix := keys.Freezes()
	resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]Freeze, 0, len(resp.Kvs))
	for _, kvp := range resp.Kvs {
		f, err := decodeFreeze(keys, string(kvp.Key), kvp.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Zone < out[j].Zone })
	return out, nil
}

// FreezeFor returns the freeze that stops zone, if any: the all-zones
// freeze, else zone's own. Both are read at one revision.
func FreezeFor(ctx context.Context, kv clientv3.KV, keys Keys, zone string) (Freeze, bool, error) {
	all, own := keys.Freeze(""), keys.Freeze(zone)
	resp, err := kv.Txn(ctx).Then(clientv3.OpGet(all), clientv3.OpGet(own)).Commit()
	if err != nil {
		return Freeze{}, false, fmt.Errorf("get %s and %s: %w", all, own, err)
	}
	for _, r := range resp.Responses {
		kvs := r.GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue
		}
		f, err := decodeFreeze(keys, string(kvs[0].Key), kvs[0].Value)
		if err != nil {
			return Freeze{}, false, err
		}
		return f, true, nil
	}
	return Freeze{}, false, nil
}

// decodeFreeze refuses a record whose zone does not match its key: a
// freeze filed under the wrong zone would stop the wrong thing silently.
func decodeFreeze(keys Keys, key string, val []byte) (Freeze, error) {
	var f Freeze
	if err := json.Unmarshal(val, &f); err != nil {
		return Freeze{}, fmt.Errorf("decode %s: %w", key, err)
	}
	if want := keys.Freeze(f.Zone); want != key {
		return Freeze{}, fmt.Errorf("freeze record %s names zone %q (key %s)", key, f.Zone, want)
	}
	return f, nil
}
