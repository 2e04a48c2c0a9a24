package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
)

// fakeClock steps one second per reading, so entry times are distinct and
// known.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 4, 1, 9, 0, 0, 123456789, time.FixedZone("JST", 9*3600))
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func appendN(t *testing.T, ctx context.Context, l *audit.Log, n int) []audit.Entry {
	t.Helper()
	out := make([]audit.Entry, 0, n)
	for i := range n {
		e, err := l.Append(ctx, audit.Entry{
			Who: "alice", Action: "freeze", Target: fmt.Sprintf("z%d.test.", i), Result: "ok",
			Detail: map[string]string{"reason": "maintenance", "ticket": fmt.Sprint(1000 + i)},
		})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func mustVerifyOK(t *testing.T, ctx context.Context, l *audit.Log, wantEntries uint64) audit.Report {
	t.Helper()
	rep, err := l.Verify(ctx)
	if err != nil {
		t.Fatalf("Verify: %v (report %+v)", err, rep)
	}
	if !rep.OK || rep.Entries != wantEntries || rep.Head.Seq != wantEntries {
		t.Fatalf("Verify report %+v, want OK with %d entries", rep, wantEntries)
	}
	return rep
}

func TestChainVerifies(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	l := audit.New(cli, store.Keys{}).WithClock(fakeClock())

	mustVerifyOK(t, ctx, l, 0) // the empty log is a valid log

	got := appendN(t, ctx, l, 50)
	prev := ""
	for i, e := range got {
		if e.Seq != uint64(i+1) || e.Prev != prev || e.Hash != e.Digest() || len(e.Hash) != 64 {
			t.Fatalf("entry %d = seq %d prev %q hash %q", i, e.Seq, e.Prev, e.Hash)
		}
		if e.Time.Location() != time.UTC {
			t.Fatalf("entry %d time %v not in UTC", i, e.Time)
		}
		prev = e.Hash
	}
	rep := mustVerifyOK(t, ctx, l, 50)
	if rep.Head.Hash != got[49].Hash {
		t.Fatalf("head hash %s, want last entry's %s", rep.Head.Hash, got[49].Hash)
	}

	// What List returns is what Append returned.
	listed, err := l.List(ctx, 0, 0)
	if err != nil || len(listed) != 50 {
		t.Fatalf("List all = %d entries, %v", len(listed), err)
	}
	for i := range listed {
		if listed[i].Hash != got[i].Hash || !listed[i].Time.Equal(got[i].Time) || listed[i].Detail["ticket"] != got[i].Detail["ticket"] {
			t.Fatalf("listed entry %d = %+v, appended %+v", i, listed[i], got[i])
		}
	}
	page, err := l.List(ctx, 48, 5)
	if err != nil || len(page) != 3 || page[0].Seq != 48 || page[2].Seq != 50 {
		t.Fatalf("List(48, 5) = %d entries starting %v, %v; want seqs 48..50", len(page), page, err)
	}
	page, err = l.List(ctx, 10, 2)
	if err != nil || len(page) != 2 || page[0].Seq != 10 || page[1].Seq != 11 {
		t.Fatalf("List(10, 2) = %v, %v; want seqs 10, 11", page, err)
	}
}

// TestDigestStable pins the canonical encoding: an entry written by an
// earlier build must keep verifying. testdata/canonical-v1.json holds the
// exact bytes the documented encoding gives for e; the digest must be
// their SHA-256. If this fails, the encoding changed: add a new version
// instead of editing the fixture.
func TestDigestStable(t *testing.T) {
	e := audit.Entry{
		Seq: 7, Time: time.Date(2026, 4, 1, 0, 0, 0, 500, time.UTC),
		Who: "alice", Action: "gate.override", Target: "test.", Result: "ok",
		Detail: map[string]string{"gate": "change-budget", "approver2": "bob"},
		Prev:   "00",
	}
	fixture, err := os.ReadFile("testdata/canonical-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fixture)
	want := hex.EncodeToString(sum[:])
	got := e.Digest()
	tests := []struct {
		name string
		edit func(e *audit.Entry)
		same bool
	}{
		{"same instant, other zone", func(e *audit.Entry) { e.Time = e.Time.In(time.FixedZone("JST", 9*3600)) }, true},
		{"hash field ignored", func(e *audit.Entry) { e.Hash = "x" }, true},
		{"detail order irrelevant", func(e *audit.Entry) {
			e.Detail = map[string]string{"approver2": "bob", "gate": "change-budget"}
		}, true},
		{"result", func(e *audit.Entry) { e.Result = "refused" }, false},
		{"seq", func(e *audit.Entry) { e.Seq = 8 }, false},
		{"time", func(e *audit.Entry) { e.Time = e.Time.Add(time.Nanosecond) }, false},
		{"prev", func(e *audit.Entry) { e.Prev = "01" }, false},
		{"detail value", func(e *audit.Entry) { e.Detail = map[string]string{"gate": "change-budget", "approver2": "carol"} }, false},
		{"field boundary", func(e *audit.Entry) { e.Who, e.Action = "alicegate.override", "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e
			tt.edit(&c)
			if (c.Digest() == got) != tt.same {
				t.Fatalf("digest equal = %v, want %v", c.Digest() == got, tt.same)
			}
		})
	}
	// nil and empty detail hash the same: JSON round trips turn one into
	// the other.
	a, b := e, e
	a.Detail, b.Detail = nil, map[string]string{}
	if a.Digest() != b.Digest() {
		t.Fatal("nil and empty detail hash differently")
	}
	if got != want {
		t.Fatalf("Digest() = %s, want SHA-256 of testdata/canonical-v1.json %s", got, want)
	}
}

// TestConcurrentAppends: four appenders share the log; every entry lands,
// seqs are 1..N without gaps or duplicates, and the chain verifies.
func TestConcurrentAppends(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	const writers, each = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Logs, as separate agents would have.
			l := audit.New(cli, store.Keys{})
			for i := range each {
				if _, err := l.Append(ctx, audit.Entry{Who: fmt.Sprintf("w%d", w), Action: "probe", Target: fmt.Sprint(i), Result: "ok"}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l := audit.New(cli, store.Keys{})
	mustVerifyOK(t, ctx, l, writers*each)
	all, err := l.List(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		seen[e.Who+"/"+e.Target] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct appends stored, want %d", len(seen), writers*each)
	}
}

func TestAppendRefuses(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	l := audit.New(cli, store.Keys{}).WithClock(fakeClock())
	const secret = "hunter2-do-not-log"
	tests := []struct {
		name string
		e    audit.Entry
	}{
		{"no who", audit.Entry{Action: "freeze"}},
		{"no action", audit.Entry{Who: "alice"}},
		{"password detail", audit.Entry{Who: "alice", Action: "login", Detail: map[string]string{"Password": secret}}},
		{"private key detail", audit.Entry{Who: "alice", Action: "keys.send", Detail: map[string]string{"zsk_private_key": secret}}},
		{"tsig secret detail", audit.Entry{Who: "alice", Action: "xfr", Detail: map[string]string{"tsig-secret": secret}}},
		{"invalid utf-8", audit.Entry{Who: "alice", Action: "x", Target: "\xff"}},
		{"oversized", audit.Entry{Who: "alice", Action: "x", Result: strings.Repeat("a", 70<<10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Append(ctx, tt.e)
			if err == nil {
				t.Fatal("Append accepted it")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatal("Append error echoes a detail value")
			}
		})
	}
	// Nothing refused was written.
	mustVerifyOK(t, ctx, l, 0)
}

// TestTamperDetected: each way of changing a stored log behind Append's
// back is caught by Verify, at the right seq and for the right reason.
func TestTamperDetected(t *testing.T) {
	_, cli := etcdtest.Start(t)
	const n = 10
	tests := []struct {
		name       string
		tamper     func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys)
		wantSeq    uint64
		wantReason string
	}{
		{"edit result", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			rewrite(t, ctx, kv, k, 4, func(e *audit.Entry) { e.Result = "refused" })
		}, 4, "hash mismatch"},
		{"edit result and rehash", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			rewrite(t, ctx, kv, k, 4, func(e *audit.Entry) { e.Result = "refused"; e.Hash = e.Digest() })
		}, 5, "prev does not match"},
		{"edit detail", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			rewrite(t, ctx, kv, k, 7, func(e *audit.Entry) { e.Detail["ticket"] = "1" })
		}, 7, "hash mismatch"},
		{"delete middle", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			del(t, ctx, kv, k.AuditEntry(5))
		}, 5, "entry missing"},
		{"delete first", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			del(t, ctx, kv, k.AuditEntry(1))
		}, 1, "entry missing"},
		{"delete middle and renumber", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			// Close the gap: move 6..10 down to 5..9 with fixed seqs and
			// their own hashes, and fix the head. Only the link breaks.
			for s := uint64(6); s <= n; s++ {
				e := get(t, ctx, kv, k, s)
				e.Seq = s - 1
				e.Hash = e.Digest()
				put(t, ctx, kv, k.AuditEntry(s-1), e)
			}
			del(t, ctx, kv, k.AuditEntry(n))
			last := get(t, ctx, kv, k, n-1)
			putHead(t, ctx, kv, k, audit.Head{Seq: n - 1, Hash: last.Hash})
		}, 5, "prev does not match"},
		{"delete tail", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			del(t, ctx, kv, k.AuditEntry(n))
		}, n, "tail removed"},
		{"delete last three", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			for s := uint64(n - 2); s <= n; s++ {
				del(t, ctx, kv, k.AuditEntry(s))
			}
		}, n - 2, "tail removed"},
		{"swap two", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			a, b := get(t, ctx, kv, k, 3), get(t, ctx, kv, k, 7)
			put(t, ctx, kv, k.AuditEntry(3), b)
			put(t, ctx, kv, k.AuditEntry(7), a)
		}, 3, "reordered"},
		{"swap two and fix seqs", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			a, b := get(t, ctx, kv, k, 3), get(t, ctx, kv, k, 4)
			a.Seq, b.Seq = 4, 3
			put(t, ctx, kv, k.AuditEntry(3), b)
			put(t, ctx, kv, k.AuditEntry(4), a)
		}, 3, "hash mismatch"},
		{"replace last entry, rehashed", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			rewrite(t, ctx, kv, k, n, func(e *audit.Entry) { e.Result = "refused"; e.Hash = e.Digest() })
		}, n, "head hash differs"},
		{"delete head", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			del(t, ctx, kv, k.AuditHead())
		}, n, "head record missing"},
		{"entry beyond head", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			e := get(t, ctx, kv, k, n)
			next := audit.Entry{Seq: n + 1, Time: e.Time, Who: "mallory", Action: "x", Prev: e.Hash}
			next.Hash = next.Digest()
			put(t, ctx, kv, k.AuditEntry(n+1), next)
		}, n + 1, "beyond head"},
		{"garbage entry", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			if _, err := kv.Put(ctx, k.AuditEntry(6), "{"); err != nil {
				t.Fatal(err)
			}
		}, 6, "undecodable"},
		{"foreign key among entries", func(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys) {
			if _, err := kv.Put(ctx, k.AuditEntries()+"00000000000000000002x", "{}"); err != nil {
				t.Fatal(err)
			}
		}, 3, "unexpected key"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			keys := store.Keys{Prefix: fmt.Sprintf("/tamper/%d", i)}
			l := audit.New(cli, keys).WithClock(fakeClock())
			appendN(t, ctx, l, n)
			mustVerifyOK(t, ctx, l, n)

			tt.tamper(t, ctx, cli, keys)

			rep, err := l.Verify(ctx)
			if !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("Verify after tampering = %v (report %+v), want ErrTampered", err, rep)
			}
			if rep.OK || rep.BadSeq != tt.wantSeq || !strings.Contains(rep.Reason, tt.wantReason) {
				t.Fatalf("report: bad seq %d (%s), want seq %d (%s)", rep.BadSeq, rep.Reason, tt.wantSeq, tt.wantReason)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("seq %d", tt.wantSeq)) {
				t.Fatalf("error %q does not name seq %d", err, tt.wantSeq)
			}
		})
	}
}

// TestAppendRefusesPastHead: an entry written past the head (outside
// Append) stops further appends instead of being silently overwritten.
func TestAppendRefusesPastHead(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	keys := store.Keys{}
	l := audit.New(cli, keys).WithClock(fakeClock())
	appendN(t, ctx, l, 3)
	if _, err := cli.Put(ctx, keys.AuditEntry(4), `{"seq":4}`); err != nil {
		t.Fatal(err)
	}
	_, err := l.Append(ctx, audit.Entry{Who: "alice", Action: "freeze"})
	if !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("Append over a foreign entry = %v, want ErrTampered", err)
	}
	if got := get(t, ctx, cli, keys, 4); got.Who != "" {
		t.Fatalf("foreign entry overwritten: %+v", got)
	}
}

// TestVerifyReadsOneRevision: appends racing a Verify neither fail it nor
// get half-counted.
func TestVerifyReadsOneRevision(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := ctxT(t)
	l := audit.New(cli, store.Keys{})
	appendN(t, ctx, l, 20)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := l.Append(ctx, audit.Entry{Who: "bg", Action: "probe"}); err != nil {
				done <- err
				return
			}
		}
	}()
	for range 10 {
		rep, err := l.Verify(ctx)
		if err != nil || !rep.OK || rep.Entries != rep.Head.Seq {
			close(stop)
			t.Fatalf("Verify during appends: %v, report %+v", err, rep)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys, seq uint64) audit.Entry {
	t.Helper()
	var e audit.Entry
	if _, found, err := store.GetJSON(ctx, kv, k.AuditEntry(seq), &e); err != nil || !found {
		t.Fatalf("get entry %d: found %v err %v", seq, found, err)
	}
	return e
}

func put(t *testing.T, ctx context.Context, kv clientv3.KV, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
}

func putHead(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys, h audit.Head) {
	t.Helper()
	put(t, ctx, kv, k.AuditHead(), h)
}

func rewrite(t *testing.T, ctx context.Context, kv clientv3.KV, k store.Keys, seq uint64, f func(*audit.Entry)) {
	t.Helper()
	e := get(t, ctx, kv, k, seq)
	f(&e)
	put(t, ctx, kv, k.AuditEntry(seq), e)
}

func del(t *testing.T, ctx context.Context, kv clientv3.KV, key string) {
	t.Helper()
	resp, err := kv.Delete(ctx, key)
	if err != nil || resp.Deleted != 1 {
		t.Fatalf("delete %s: deleted %v err %v", key, resp, err)
	}
}
