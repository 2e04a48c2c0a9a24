package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Active is the active-site record. Epoch is the fencing token: it only
// ever grows, by exactly one per change of the record, and every writer
// that acts for the active site checks that the epoch it acts under is
// still the stored one (ARCHITECTURE.md, "The active-site record").
type Active struct {
	Site      string    `json:"site"`
	Epoch     uint64    `json:"epoch"`
	Since     time.Time `json:"since"`
	Operation string    `json:"operation"` // the operation id that set it
}

// ErrEpochChanged: the active-site record is not at the epoch the caller
// expected, so the caller's view is stale and it must not act on it.
// Returned as an *EpochError.
var ErrEpochChanged = errors.New("active-site epoch changed")

// EpochError reports a lost epoch compare-and-swap with what was found.
type EpochError struct {
	Key      string
	Expected uint64
	Seen     Active
}

func (e *EpochError) Error() string {
	return fmt.Sprintf("%s: epoch is %d (site %s, operation %q), expected %d: %v",
		e.Key, e.Seen.Epoch, e.Seen.Site, e.Seen.Operation, e.Expected, ErrEpochChanged)
}

func (e *EpochError) Unwrap() error { return ErrEpochChanged }

// casAttempts bounds retries when the record is rewritten between read and
// write without its epoch changing; only a writer bypassing CASActive can
// do that, so more than one retry is already suspicious.
const casAttempts = 3

// GetActive reads the active-site record. found is false when the
// deployment was never initialised.
func GetActive(ctx context.Context, kv clientv3.KV, keys Keys) (Active, bool, error) {
	var a Active
	_, found, err := GetJSON(ctx, kv, keys.Active(), &a)
	if err != nil {
		return Active{}, false, err
	}
	return a, found, nil
}

// InitActive creates the active-site record at epoch 1 naming site, only
// if there is none; otherwise it returns ErrExists and changes nothing.
// Since is the wall clock: it is only reported, never compared.
func InitActive(ctx context.Context, kv clientv3.KV, keys Keys, site, op string) (Active, error) {
	if site == "" {
		return Active{}, fmt.Errorf("init %s: site is empty", keys.Active())
	}
	a := Active{Site: site, Epoch: 1, Since: time.Now().UTC(), Operation: op}
	if err := CreateJSON(ctx, kv, keys.Active(), a); err != nil {
		return Active{}, err
	}
	return a, nil
}

// CASActive names site active at epoch expectEpoch+1, only if the stored
// epoch is expectEpoch. Otherwise it returns an *EpochError (errors.Is
// ErrEpochChanged) carrying the record found, and changes nothing. Of any
// number of concurrent calls with the same expectEpoch, exactly one wins.
func CASActive(ctx context.Context, kv clientv3.KV, keys Keys, expectEpoch uint64, site, op string, now time.Time) (Active, error) {
	key := keys.Active()
	if site == "" {
		return Active{}, fmt.Errorf("set %s: site is empty", key)
	}
	if expectEpoch == 0 {
		return Active{}, fmt.Errorf("set %s: expected epoch 0 (epochs start at 1; use InitActive)", key)
	}
	next := Active{Site: site, Epoch: expectEpoch + 1, Since: now.UTC(), Operation: op}
	b, err := json.Marshal(next)
	if err != nil {
		return Active{}, fmt.Errorf("encode %s: %w", key, err)
	}

	var cur Active
	rev, found, err := GetJSON(ctx, kv, key, &cur)
	if err != nil {
		return Active{}, err
	}
	for range casAttempts {
		if !found {
			return Active{}, fmt.Errorf("set %s at epoch %d: %w", key, expectEpoch, ErrNotFound)
		}
		if cur.Epoch != expectEpoch {
			return Active{}, &EpochError{Key: key, Expected: expectEpoch, Seen: cur}
		}
		// The epoch is inside the JSON value, which etcd cannot compare;
		// the mod revision of the value just read stands in for it.
		resp, err := kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(b))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return Active{}, fmt.Errorf("set %s at epoch %d: %w", key, expectEpoch, err)
		}
		if resp.Succeeded {
			return next, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		found = len(kvs) > 0
		if found {
			cur = Active{}
			if err := json.Unmarshal(kvs[0].Value, &cur); err != nil {
				return Active{}, fmt.Errorf("decode %s: %w", key, err)
			}
			rev = kvs[0].ModRevision
		}
	}
	return Active{}, fmt.Errorf("set %s at epoch %d: rewritten %d times without an epoch change: %w",
		key, expectEpoch, casAttempts, ErrConflict)
}
