package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Report is the outcome of Verify.
type Report struct {
	// Revision is the etcd revision the whole walk read at, so entries
	// appended during the walk neither break nor extend it.
	Revision int64 `json:"revision"`
	// Head is the head record as read; zero if absent.
	Head Head `json:"head"`
	// Entries is how many entries were checked before stopping.
	Entries uint64 `json:"entries"`
	// OK is true when the chain is whole and matches the head.
	OK bool `json:"ok"`
	// BadSeq is the first seq at which the log is wrong, when !OK.
	BadSeq uint64 `json:"bad_seq,omitempty"`
	// Reason says what is wrong at BadSeq.
	Reason string `json:"reason,omitempty"`
}

// Verify walks the whole log at one revision and checks that it is the
// chain Append writes: seqs 1..N without gaps, each entry stored under its
// own seq, each hash matching its content, each Prev matching the entry
// before, and the head naming entry N and its hash. It stops at the first
// problem; the error wraps ErrTampered and the report names the seq and
// why. Other errors (etcd unreachable, revision compacted) mean nothing was
// concluded.
func (l *Log) Verify(ctx context.Context) (Report, error) {
	headKey := l.keys.AuditHead()
	resp, err := l.kv.Get(ctx, headKey)
	if err != nil {
		return Report{}, fmt.Errorf("audit verify: get %s: %w", headKey, err)
	}
	rep := Report{Revision: resp.Header.Revision}
	head, headRev, err := decodeHead(headKey, resp.Kvs)
	if err != nil {
		return rep, l.bad(&rep, 0, "head record undecodable: "+err.Error())
	}
	rep.Head = head

	prefix := l.keys.AuditEntries()
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var last Entry // zero: before seq 1, Hash "" is the first entry's Prev
	for {
		page, err := l.kv.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rep.Revision),
			clientv3.WithLimit(verifyPage))
		if err != nil {
			return rep, fmt.Errorf("audit verify: read %s at revision %d: %w", prefix, rep.Revision, err)
		}
		for _, kv := range page.Kvs {
			want := last.Seq + 1
			key := string(kv.Key)
			seq, ok := seqOf(prefix, key)
			if !ok {
				return rep, l.bad(&rep, want, fmt.Sprintf("unexpected key %s among the entries", key))
			}
			if seq != want {
				return rep, l.bad(&rep, want, fmt.Sprintf("entry missing (next stored entry is seq %d)", seq))
			}
			var e Entry
			if err := json.Unmarshal(kv.Value, &e); err != nil {
				return rep, l.bad(&rep, seq, "entry undecodable: "+err.Error())
			}
			if e.Seq != seq {
				return rep, l.bad(&rep, seq, fmt.Sprintf("stored under seq %d but says seq %d: entries moved or reordered", seq, e.Seq))
			}
			if e.Digest() != e.Hash {
				return rep, l.bad(&rep, seq, "hash mismatch: entry edited after it was written")
			}
			if e.Prev != last.Hash {
				return rep, l.bad(&rep, seq, fmt.Sprintf("prev does not match the hash of seq %d: an entry was removed or replaced", last.Seq))
			}
			last = e
			rep.Entries++
		}
		if !page.More || len(page.Kvs) == 0 {
			break
		}
		from = string(page.Kvs[len(page.Kvs)-1].Key) + "\x00"
	}

	switch {
	case headRev == 0 && last.Seq == 0:
		// The empty log.
	case headRev == 0:
		return rep, l.bad(&rep, last.Seq, fmt.Sprintf("head record missing with %d entries stored", last.Seq))
	case head.Seq > last.Seq:
		return rep, l.bad(&rep, last.Seq+1, fmt.Sprintf("entries %d..%d missing: head says seq %d (tail removed)", last.Seq+1, head.Seq, head.Seq))
	case head.Seq < last.Seq:
		return rep, l.bad(&rep, head.Seq+1, fmt.Sprintf("entries %d..%d lie beyond head seq %d: written outside Append", head.Seq+1, last.Seq, head.Seq))
	case head.Hash != last.Hash:
		return rep, l.bad(&rep, last.Seq, "head hash differs from the entry's: the last entry was replaced")
	}
	rep.OK = true
	return rep, nil
}

func (l *Log) bad(rep *Report, seq uint64, reason string) error {
	rep.OK, rep.BadSeq, rep.Reason = false, seq, reason
	return fmt.Errorf("audit log %s: seq %d: %s: %w", l.keys.AuditEntries(), seq, reason, ErrTampered)
}

// seqOf parses the seq out of an entry key: exactly 20 digits after the
// prefix, as store.Keys.AuditEntry writes them.
func seqOf(prefix, key string) (uint64, bool) {
	s, ok := strings.CutPrefix(key, prefix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
