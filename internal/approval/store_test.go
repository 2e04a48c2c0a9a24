package approval

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// storeFixture is one etcd shared by the subtests, each under its own
// prefix, and the cast of operators.
type storeFixture struct {
	cli                             *clientv3.Client
	alice, bob, carol, dave, mallry person
	ops                             []config.Operator
	s                               Subject
}

func TestStore(t *testing.T) {
	_, cli := etcdtest.Start(t)
	f := storeFixture{
		cli:    cli,
		alice:  newPerson(t, "alice", 1),
		bob:    newPerson(t, "bob", 2),
		carol:  newECDSAPerson(t, "carol"),
		dave:   newPerson(t, "dave", 4),
		mallry: newPerson(t, "mallory", 9),
		s: Subject{
			Kind:      KindZoneOverride,
			ID:        "test./2026040101",
			Digest:    digestOf("test. 2026040101"),
			Requester: "alice",
			Expires:   t0.Add(time.Hour),
		},
	}
	f.ops = []config.Operator{f.alice.operator(), f.bob.operator(), f.carol.operator(), f.dave.operator()}
	t.Run("put and list", f.testPutList)
	t.Run("approve audits every outcome", f.testApprove)
	t.Run("concurrent approvals by one operator", f.testConcurrent)
	t.Run("audit failure removes the approval", f.testAuditFailure)
}

func (f storeFixture) testPutList(t *testing.T) {
	ctx := ctxT(t)
	keys := store.Keys{Prefix: "/t-put"}
	s := f.s
	bobOK := approve(t, f.bob, "bob", s, t0)

	if err := Put(ctx, f.cli, keys, s, bobOK); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := List(ctx, f.cli, keys, s)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != 1 || got[0].Operator != "bob" || got[0].Signature != bobOK.Signature || !got[0].At.Equal(t0) {
		t.Fatalf("List = %+v, want bob's approval", got)
	}
	if !strings.HasPrefix(Key(keys, s, "bob"), "/t-put/approvals/zone-override/test.%2F2026040101/"+s.Hash()+"/") {
		t.Fatalf("Key = %s", Key(keys, s, "bob"))
	}

	otherDigest := s
	otherDigest.Digest = digestOf("other")
	garbage := bobOK
	garbage.Operator = "dave"
	garbage.Signature = strings.Replace(garbage.Signature, "A", "B", 1)
	noTime := approve(t, f.dave, "dave", s, time.Time{})
	late := approve(t, f.dave, "dave", s, s.Expires.Add(time.Second))
	badSubject := s
	badSubject.Digest = "x"

	tests := []struct {
		name string
		s    Subject
		a    Approval
		want error // sentinel, or nil for "some error"
	}{
		{"same operator again", s, approve(t, f.bob, "bob", s, t0.Add(time.Minute)), store.ErrExists},
		{"bad signature", s, garbage, ErrBadSignature},
		{"signature over another subject", s, approve(t, f.dave, "dave", otherDigest, t0), ErrBadSignature},
		{"requester", s, approve(t, f.alice, "alice", s, t0), ErrSelfApproval},
		{"after expiry", s, late, ErrExpired},
		{"no time", s, noTime, nil},
		{"invalid subject", badSubject, approve(t, f.dave, "dave", badSubject, t0), nil},
		{"no operator", s, approve(t, f.dave, "", s, t0), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Put(ctx, f.cli, keys, tc.s, tc.a)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Put = %v, want %v", err, tc.want)
			}
		})
	}
	got, err = List(ctx, f.cli, keys, s)
	if err != nil || len(got) != 1 || got[0].Signature != bobOK.Signature {
		t.Fatalf("after refused puts, List = %+v, %v; want only bob's first approval", got, err)
	}
	if got, err := List(ctx, f.cli, keys, otherDigest); err != nil || len(got) != 0 {
		t.Fatalf("List(another digest) = %+v, %v; want none", got, err)
	}

	// Put cannot know operators' keys: a sound signature by an outsider
	// filed under carol's name is stored, and Check refuses it.
	if err := Put(ctx, f.cli, keys, s, approve(t, f.mallry, "carol", s, t0)); err != nil {
		t.Fatalf("Put(outsider as carol): %v", err)
	}
	got, err = List(ctx, f.cli, keys, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Check(s, got, f.ops, 2, t0)
	if !errors.Is(err, ErrNotEnough) || len(v.Rejected) != 1 || !errors.Is(v.Rejected[0].Err, ErrWrongKey) {
		t.Fatalf("Check(stored) = %v, %+v; want carol's entry refused as another key", err, v)
	}

	// A record filed under another operator's key is refused on read.
	b, _ := json.Marshal(bobOK)
	if _, err := f.cli.Put(ctx, Key(keys, s, "dave"), string(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := List(ctx, f.cli, keys, s); err == nil || !strings.Contains(err.Error(), "names operator") {
		t.Fatalf("List with a misfiled record = %v", err)
	}
}

func (f storeFixture) testApprove(t *testing.T) {
	ctx := ctxT(t)
	keys := store.Keys{Prefix: "/t-approve"}
	log := audit.New(f.cli, keys).WithClock(func() time.Time { return t0 })
	s := f.s
	other := s
	other.Digest = digestOf("another zone version")

	steps := []struct {
		name   string
		a      Approval
		want   error  // nil or sentinel
		result string // audit result prefix
	}{
		{"bob approves", approve(t, f.bob, "bob", s, t0), nil, "ok"},
		{"requester approves own", approve(t, f.alice, "alice", s, t0), ErrSelfApproval, "refused: "},
		{"bob again", approve(t, f.bob, "bob", s, t0.Add(time.Minute)), ErrDuplicate, "refused: "},
		{"outsider", approve(t, f.mallry, "mallory", s, t0), ErrUnknownOperator, "refused: "},
		{"carol's key as dave", approve(t, f.carol, "dave", s, t0), ErrWrongKey, "refused: "},
		{"carol over another version", approve(t, f.carol, "carol", other, t0), ErrBadSignature, "refused: "},
		{"carol after expiry", approve(t, f.carol, "carol", s, s.Expires.Add(time.Second)), ErrExpired, "refused: "},
		{"bad operator name", approve(t, f.carol, "car\nol", s, t0), nil, "refused: "},
		{"carol approves", approve(t, f.carol, "carol", s, t0), nil, "ok"},
	}
	for _, st := range steps {
		err := Approve(ctx, f.cli, keys, log, s, st.a, f.ops)
		switch {
		case st.result == "ok" && err != nil:
			t.Fatalf("%s: Approve: %v", st.name, err)
		case st.result != "ok" && err == nil:
			t.Fatalf("%s: Approve succeeded", st.name)
		case st.want != nil && !errors.Is(err, st.want):
			t.Fatalf("%s: Approve = %v, want %v", st.name, err, st.want)
		}
	}

	got, err := List(ctx, f.cli, keys, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Operator != "bob" || got[1].Operator != "carol" {
		t.Fatalf("stored approvals %+v, want bob's and carol's", got)
	}
	if _, err := Check(s, got, f.ops, 2, t0); err != nil {
		t.Fatalf("Check(stored): %v", err)
	}
	if _, err := Check(s, got, f.ops, 2, s.Expires.Add(time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("Check(stored) after expiry = %v, want ErrExpired", err)
	}

	entries, err := log.List(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(steps) {
		t.Fatalf("%d audit entries, want %d: %+v", len(entries), len(steps), entries)
	}
	for i, e := range entries {
		st := steps[i]
		wantWho := st.a.Operator
		if st.name == "bad operator name" {
			wantWho = `(invalid operator name "car\nol")`
		}
		if e.Who != wantWho || e.Action != "approve" || e.Target != "zone-override/test./2026040101" ||
			!strings.HasPrefix(e.Result, st.result) || (st.result == "ok" && e.Result != "ok") {
			t.Errorf("%s: audit entry %+v", st.name, e)
		}
		if e.Detail["digest"] != s.Digest || e.Detail["requester"] != "alice" || e.Detail["id"] != s.ID {
			t.Errorf("%s: audit detail %v", st.name, e.Detail)
		}
		if strings.Contains(e.Result, "BEGIN SSH SIGNATURE") {
			t.Errorf("%s: audit result carries the signature: %q", st.name, e.Result)
		}
	}
	// Refusals say why, in words an operator can act on.
	for i, want := range map[int]string{1: "cannot approve own", 2: "already approved", 3: "not a configured operator", 4: "another key"} {
		if !strings.Contains(entries[i].Result, want) {
			t.Errorf("audit entry %d result %q, want it to mention %q", i, entries[i].Result, want)
		}
	}
	if fp := ssh.FingerprintSHA256(f.bob.signer.PublicKey()); entries[0].Detail["key"] != fp {
		t.Errorf("bob's audit entry names key %q, want %q", entries[0].Detail["key"], fp)
	}
	if _, ok := entries[3].Detail["key"]; ok {
		t.Errorf("an unknown operator's entry names a key: %v", entries[3].Detail)
	}
	if rep, err := log.Verify(ctx); err != nil || !rep.OK {
		t.Fatalf("audit chain: %v %+v", err, rep)
	}
}

func (f storeFixture) testConcurrent(t *testing.T) {
	ctx := ctxT(t)
	keys := store.Keys{Prefix: "/t-concurrent"}
	log := audit.New(f.cli, keys)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		a := approve(t, f.carol, "carol", f.s, t0) // ECDSA: each signature differs
		wg.Go(func() { errs[i] = Approve(ctx, f.cli, keys, log, f.s, a, f.ops) })
	}
	wg.Wait()
	okCount := 0
	for _, err := range errs {
		switch {
		case err == nil:
			okCount++
		case !errors.Is(err, ErrDuplicate):
			t.Errorf("Approve: %v, want nil or ErrDuplicate", err)
		}
	}
	if okCount != 1 {
		t.Fatalf("%d concurrent approvals by one operator succeeded, want 1", okCount)
	}
	got, err := List(ctx, f.cli, keys, f.s)
	if err != nil || len(got) != 1 {
		t.Fatalf("List = %+v, %v; want one approval", got, err)
	}
	entries, err := log.List(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]int{}
	for _, e := range entries {
		results[strings.SplitN(e.Result, ":", 2)[0]]++
	}
	if len(entries) != n || results["ok"] != 1 || results["refused"] != n-1 {
		t.Fatalf("audit results %v over %d entries, want 1 ok and %d refused", results, len(entries), n-1)
	}
}

// testAuditFailure breaks the audit log (an entry past the head, which
// Append refuses as tampering) and checks that the approval is not left
// counting without its record.
func (f storeFixture) testAuditFailure(t *testing.T) {
	ctx := ctxT(t)
	keys := store.Keys{Prefix: "/t-auditfail"}
	log := audit.New(f.cli, keys)
	if _, err := f.cli.Put(ctx, keys.AuditEntry(1), "{}"); err != nil {
		t.Fatal(err)
	}
	err := Approve(ctx, f.cli, keys, log, f.s, approve(t, f.bob, "bob", f.s, t0), f.ops)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "removed again") {
		t.Fatalf("Approve with a broken audit log = %v", err)
	}
	if got, err := List(ctx, f.cli, keys, f.s); err != nil || len(got) != 0 {
		t.Fatalf("List = %+v, %v; want no approval left", got, err)
	}
	// Once the log is whole again the same approval goes through.
	if _, err := f.cli.Delete(ctx, keys.AuditEntry(1)); err != nil {
		t.Fatal(err)
	}
	if err := Approve(ctx, f.cli, keys, log, f.s, approve(t, f.bob, "bob", f.s, t0), f.ops); err != nil {
		t.Fatalf("Approve after repair: %v", err)
	}
}
