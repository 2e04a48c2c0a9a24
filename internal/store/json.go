package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Expected outcomes, for errors.Is. Each is returned wrapped with the key.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a create found the key already present.
	ErrExists = errors.New("already exists")
	// ErrConflict: a compare-and-swap lost, the key changed since it was
	// read. Read again and decide again.
	ErrConflict = errors.New("changed since read")
)

// GetJSON reads key into v. rev is the key's mod revision, to pass to
// UpdateJSON. A missing key is found == false with a nil error and v
// untouched.
func GetJSON(ctx context.Context, kv clientv3.KV, key string, v any) (rev int64, found bool, err error) {
	resp, err := kv.Get(ctx, key)
	if err != nil {
		return 0, false, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, true, nil
}

// CreateJSON writes v at key only if key does not exist; otherwise it
// returns ErrExists.
func CreateJSON(ctx context.Context, kv clientv3.KV, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("create %s: %w", key, ErrExists)
	}
	return nil
}

// UpdateJSON writes v at key only if the key's mod revision is still
// expectModRev (from GetJSON); otherwise it returns ErrConflict. An
// expectModRev of 0 means "only if absent", like CreateJSON but reporting
// ErrConflict.
func UpdateJSON(ctx context.Context, kv clientv3.KV, key string, v any, expectModRev int64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectModRev)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("update %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("update %s at revision %d: %w", key, expectModRev, ErrConflict)
	}
	return nil
}
