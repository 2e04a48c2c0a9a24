package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/store"
)

// ErrTampered: the stored log is not a chain Append could have written.
var ErrTampered = errors.New("audit log tampered")

const (
	// appendAttempts bounds retries of a lost head compare. Each round
	// among n concurrent appenders lets one through, so an appender can
	// lose about once per entry the others write meanwhile; 64 covers
	// every agent and operator of a deployment appending at once.
	appendAttempts = 64
	// maxBackoff caps the random pause after a lost round, which spreads
	// appenders that collided.
	maxBackoff = 20 * time.Millisecond
	// maxEntryBytes keeps entries to what an audit record needs; etcd
	// would take 1.5 MiB, and the log is kept forever.
	maxEntryBytes = 64 << 10
	// verifyPage is how many entries Verify reads per request.
	verifyPage = 500
)

// secretWords are detail names Append refuses: a backstop for the rule
// that details hold identifiers only, never secrets.
var secretWords = []string{"secret", "password", "passwd", "passphrase", "private", "credential"}

// Log appends to and reads the audit log under keys.
type Log struct {
	kv    clientv3.KV
	keys  store.Keys
	clock func() time.Time
}

// New returns a Log on kv (usually a *clientv3.Client) that stamps
// entries with time.Now.
func New(kv clientv3.KV, keys store.Keys) *Log {
	return &Log{kv: kv, keys: keys, clock: time.Now}
}

// WithClock returns a copy of l that stamps entries with clock; for tests
// and replays that need known times.
func (l *Log) WithClock(clock func() time.Time) *Log {
	c := *l
	c.clock = clock
	return &c
}

// Append adds e as the next entry and returns it as stored, with Seq,
// Time, Prev and Hash set (values passed in those fields are ignored). The
// entry and the new head are written in one Txn that compares the head's
// mod revision, so concurrent appenders never fork the chain: each lands
// at its own consecutive seq.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	if err := validate(e); err != nil {
		return Entry{}, fmt.Errorf("audit append %s %s: %w", e.Action, e.Target, err)
	}
	headKey := l.keys.AuditHead()
	head, headRev, err := l.head(ctx, 0)
	if err != nil {
		return Entry{}, fmt.Errorf("audit append %s %s: %w", e.Action, e.Target, err)
	}
	for attempt := 1; ; attempt++ {
		e.Seq = head.Seq + 1
		e.Prev = head.Hash
		e.Time = l.clock().UTC()
		e.Hash = e.Digest()
		entryKey := l.keys.AuditEntry(e.Seq)
		eb, err := json.Marshal(e)
		if err != nil {
			return Entry{}, fmt.Errorf("audit append seq %d: encode: %w", e.Seq, err)
		}
		if len(eb) > maxEntryBytes {
			return Entry{}, fmt.Errorf("audit append %s %s: entry is %d bytes, limit %d", e.Action, e.Target, len(eb), maxEntryBytes)
		}
		hb, _ := json.Marshal(Head{Seq: e.Seq, Hash: e.Hash})

		resp, err := l.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(headKey), "=", headRev),
				clientv3.Compare(clientv3.CreateRevision(entryKey), "=", 0)).
			Then(clientv3.OpPut(entryKey, string(eb)), clientv3.OpPut(headKey, string(hb))).
			Else(clientv3.OpGet(headKey)).
			Commit()
		if err != nil {
			return Entry{}, fmt.Errorf("audit append seq %d: %w", e.Seq, err)
		}
		if resp.Succeeded {
			return e, nil
		}
		newHead, newRev, err := decodeHead(headKey, resp.Responses[0].GetResponseRange().Kvs)
		if err != nil {
			return Entry{}, fmt.Errorf("audit append seq %d: %w", e.Seq, err)
		}
		if newRev == headRev {
			// The head did not move, so the entry key was taken: something
			// wrote past the head without going through Append.
			return Entry{}, fmt.Errorf("audit append: %s exists beyond head seq %d: %w", entryKey, head.Seq, ErrTampered)
		}
		head, headRev = newHead, newRev
		if attempt == appendAttempts {
			return Entry{}, fmt.Errorf("audit append %s %s: head moved %d times under contention", e.Action, e.Target, attempt)
		}
		if err := pause(ctx, attempt); err != nil {
			return Entry{}, fmt.Errorf("audit append %s %s: %w", e.Action, e.Target, err)
		}
	}
}

func validate(e Entry) error {
	if e.Who == "" || e.Action == "" {
		return errors.New("who and action are required")
	}
	for name, s := range map[string]string{"who": e.Who, "action": e.Action, "target": e.Target, "result": e.Result} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%s is not valid UTF-8", name)
		}
	}
	for k, v := range e.Detail {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("detail %q is not valid UTF-8", k)
		}
		lk := strings.ToLower(k)
		for _, w := range secretWords {
			if strings.Contains(lk, w) {
				// Name the key, never the value.
				return fmt.Errorf("detail %q looks like a secret; audit details hold identifiers only", k)
			}
		}
	}
	return nil
}

// pause sleeps a random time growing with attempt, or until ctx ends.
func pause(ctx context.Context, attempt int) error {
	d := time.Duration(attempt) * time.Millisecond
	if d > maxBackoff {
		d = maxBackoff
	}
	t := time.NewTimer(rand.N(d) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// head reads the head at revision rev (0 = latest) and returns it with its
// mod revision, 0 when absent.
func (l *Log) head(ctx context.Context, rev int64) (Head, int64, error) {
	key := l.keys.AuditHead()
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := l.kv.Get(ctx, key, opts...)
	if err != nil {
		return Head{}, 0, fmt.Errorf("get %s: %w", key, err)
	}
	return decodeHead(key, resp.Kvs)
}

func decodeHead(key string, kvs []*mvccpb.KeyValue) (Head, int64, error) {
	if len(kvs) == 0 {
		return Head{}, 0, nil
	}
	var h Head
	if err := json.Unmarshal(kvs[0].Value, &h); err != nil {
		return Head{}, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return h, kvs[0].ModRevision, nil
}

// List returns up to limit entries from seq fromSeq on, in seq order.
// limit <= 0 means all.
func (l *Log) List(ctx context.Context, fromSeq uint64, limit int) ([]Entry, error) {
	from := l.keys.AuditEntry(fromSeq)
	end := clientv3.GetPrefixRangeEnd(l.keys.AuditEntries())
	opts := []clientv3.OpOption{clientv3.WithRange(end)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := l.kv.Get(ctx, from, opts...)
	if err != nil {
		return nil, fmt.Errorf("list %s from seq %d: %w", l.keys.AuditEntries(), fromSeq, err)
	}
	out := make([]Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e Entry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}
