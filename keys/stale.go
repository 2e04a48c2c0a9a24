package keys

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/keys/proof"
)

// DropStale removes this site's receipts for keys that are no longer in
// its key directory (present lists what the directory holds now). A
// receipt proves the site could sign at the time; once the key file is
// gone it proves nothing, and keeping it would let the failover preflight
// and the key-readiness gate believe a site can sign when it cannot. The
// sender then sees the key as lacking and sends it again. It returns the
// receipts it dropped.
func (r *Receiver) DropStale(ctx context.Context, present []inventory.Key) ([]string, error) {
	have := map[string]bool{}
	for _, k := range present {
		if k.State == inventory.StateOK {
			have[store.CanonicalZone(k.Zone)+"/"+k.Digest] = true
		}
	}
	p := PathsFor(r.Keys)
	resp, err := r.KV.Get(ctx, p.Receipts(r.Site), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read receipts of %s: %w", r.Site, err)
	}
	var dropped []string
	for _, kv := range resp.Kvs {
		var s proof.Signed
		if json.Unmarshal(kv.Value, &s) != nil {
			continue
		}
		var rc proof.Receipt
		if json.Unmarshal(s.Receipt, &rc) != nil {
			continue
		}
		if have[store.CanonicalZone(rc.Zone)+"/"+rc.Digest] {
			continue
		}
		// Only if still the same record: a fresh proof may have landed.
		txn, err := r.KV.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(string(kv.Key))).Commit()
		if err != nil {
			return dropped, fmt.Errorf("drop stale receipt %s: %w", kv.Key, err)
		}
		if !txn.Succeeded {
			continue
		}
		what := fmt.Sprintf("%s tag %d (digest %.12s)", rc.Zone, rc.Tag, rc.Digest)
		dropped = append(dropped, what)
		if r.Log != nil {
			r.Log.Error("key gone from this site's key directory: its possession receipt is withdrawn", "key", what)
		}
		if r.Audit != nil {
			_, _ = r.Audit.Append(ctx, audit.Entry{Who: "agent " + r.Site, Action: "keys.receipt-withdrawn", Target: rc.Zone,
				Result: "ok", Detail: map[string]string{"tag": fmt.Sprint(rc.Tag), "digest": rc.Digest, "reason": "key no longer in the key directory"}})
		}
	}
	return dropped, nil
}
