package approval

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/config"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	alice := newPerson(t, "alice", 1) // the requester
	bob := newPerson(t, "bob", 2)
	carol := newECDSAPerson(t, "carol")
	dave := newPerson(t, "dave", 4)
	mallory := newPerson(t, "mallory", 9) // not configured
	ops := []config.Operator{alice.operator(), bob.operator(), carol.operator(), dave.operator()}

	s := Subject{
		Kind:      KindZoneOverride,
		ID:        "test./2026040101",
		Digest:    digestOf("test. 2026040101 zonemd"),
		Requester: "alice",
		Expires:   t0.Add(time.Hour),
	}
	otherDigest, otherKind, otherExpiry, otherRequester := s, s, s, s
	otherDigest.Digest = digestOf("test. 2026040102 zonemd")
	otherKind.Kind = KindFailover
	otherExpiry.Expires = s.Expires.Add(time.Hour)
	otherRequester.Requester = "dave"

	at := t0.Add(-time.Minute)
	ok := func(p person) Approval { return approve(t, p, p.name, s, at) }

	tests := []struct {
		name      string
		approvals []Approval
		need      int
		now       time.Time
		want      error // nil, or the sentinel the error wraps
		approvers []string
		rejected  map[int]error // index → sentinel of its reason
	}{
		{"two distinct approvals", []Approval{ok(bob), ok(carol)}, 2, t0, nil, []string{"bob", "carol"}, nil},
		{"one is not enough", []Approval{ok(bob)}, 2, t0, ErrNotEnough, []string{"bob"}, nil},
		{"one is enough when one is needed", []Approval{ok(carol)}, 1, t0, nil, []string{"carol"}, nil},
		{"three of three", []Approval{ok(dave), ok(bob), ok(carol)}, 3, t0, nil, []string{"dave", "bob", "carol"}, nil},
		{"none", nil, 1, t0, ErrNotEnough, nil, nil},
		{"requester approving", []Approval{ok(alice), ok(bob)}, 2, t0, ErrNotEnough, []string{"bob"},
			map[int]error{0: ErrSelfApproval}},
		{"requester alone", []Approval{ok(alice)}, 1, t0, ErrNotEnough, nil,
			map[int]error{0: ErrSelfApproval}},
		{"same operator twice counts once", []Approval{ok(bob), ok(bob)}, 2, t0, ErrNotEnough, []string{"bob"},
			map[int]error{1: ErrDuplicate}},
		{"same operator, two different signatures", []Approval{ok(carol), ok(carol), ok(bob)}, 2, t0, nil, []string{"carol", "bob"},
			map[int]error{1: ErrDuplicate}},
		{"unknown operator", []Approval{ok(mallory), ok(bob)}, 2, t0, ErrNotEnough, []string{"bob"},
			map[int]error{0: ErrUnknownOperator}},
		{"unconfigured key under a configured name", []Approval{approve(t, mallory, "bob", s, at), ok(carol)}, 2, t0, ErrNotEnough, []string{"carol"},
			map[int]error{0: ErrWrongKey}},
		{"another operator's key", []Approval{approve(t, carol, "bob", s, at), ok(carol)}, 2, t0, ErrNotEnough, []string{"carol"},
			map[int]error{0: ErrWrongKey}},
		{"requester's key under another name", []Approval{approve(t, alice, "bob", s, at), ok(dave)}, 2, t0, ErrNotEnough, []string{"dave"},
			map[int]error{0: ErrWrongKey}},
		{"bad approval does not use up the operator", []Approval{approve(t, carol, "bob", s, at), ok(bob), ok(carol)}, 2, t0, nil, []string{"bob", "carol"},
			map[int]error{0: ErrWrongKey}},
		{"signature over another digest", []Approval{approve(t, bob, "bob", otherDigest, at), ok(carol)}, 2, t0, ErrNotEnough, []string{"carol"},
			map[int]error{0: ErrBadSignature}},
		{"signature over another kind", []Approval{approve(t, bob, "bob", otherKind, at), ok(carol)}, 2, t0, ErrNotEnough, []string{"carol"},
			map[int]error{0: ErrBadSignature}},
		{"signature over a later expiry", []Approval{approve(t, bob, "bob", otherExpiry, at), ok(carol)}, 2, t0, ErrNotEnough, []string{"carol"},
			map[int]error{0: ErrBadSignature}},
		{"signature over another requester", []Approval{approve(t, bob, "bob", otherRequester, at), ok(carol)}, 2, t0, ErrNotEnough, []string{"carol"},
			map[int]error{0: ErrBadSignature}},
		{"garbage signature", []Approval{{Operator: "bob", Signature: "yes, approved", At: at}}, 1, t0, ErrNotEnough, nil,
			map[int]error{0: ErrBadSignature}},
		{"expired", []Approval{ok(bob), ok(carol)}, 2, s.Expires.Add(time.Second), ErrExpired, nil,
			map[int]error{0: ErrExpired, 1: ErrExpired}},
		{"at the expiry instant still valid", []Approval{ok(bob), ok(carol)}, 2, s.Expires, nil, []string{"bob", "carol"}, nil},
		{"given after expiry", []Approval{approve(t, bob, "bob", s, s.Expires.Add(time.Minute)), ok(carol)}, 2, t0, ErrNotEnough, []string{"carol"},
			map[int]error{0: ErrExpired}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Check(s, tc.approvals, ops, tc.need, tc.now)
			if tc.want == nil && err != nil {
				t.Fatalf("Check: %v (verdict %+v)", err, v)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if v.OK() != (err == nil) {
				t.Errorf("Verdict.OK() = %v with error %v", v.OK(), err)
			}
			if !slices.Equal(v.Approvers, tc.approvers) {
				t.Errorf("approvers %q, want %q", v.Approvers, tc.approvers)
			}
			wantRejected := 0
			for _, e := range tc.rejected {
				if e != nil {
					wantRejected++
				}
			}
			if len(v.Rejected) != wantRejected {
				t.Errorf("rejected %v, want %d", v.Rejected, wantRejected)
			}
			for _, r := range v.Rejected {
				want := tc.rejected[r.Index]
				if want == nil || !errors.Is(r.Err, want) {
					t.Errorf("rejection %v, want %v", r, want)
				}
				if r.Operator != tc.approvals[r.Index].Operator {
					t.Errorf("rejection %v names the wrong operator", r)
				}
			}
		})
	}
}

// TestCheckDecidesNothing covers inputs for which Check must not reach a
// verdict at all, rather than count anything.
func TestCheckDecidesNothing(t *testing.T) {
	t.Parallel()
	bob := newPerson(t, "bob", 2)
	carol := newPerson(t, "carol", 3)
	s := Subject{Kind: KindFailover, ID: "plan-7", Digest: digestOf("plan 7"), Requester: "alice", Expires: t0.Add(time.Hour)}
	good := []Approval{approve(t, bob, "bob", s, t0), approve(t, carol, "carol", s, t0)}
	ops := []config.Operator{bob.operator(), carol.operator()}
	badSubject := s
	badSubject.Digest = "not hex"
	sameKey := carol.operator()
	sameKey.SSHPublicKey = bob.operator().SSHPublicKey

	tests := []struct {
		name string
		s    Subject
		ops  []config.Operator
		need int
	}{
		{"need zero", s, ops, 0},
		{"need negative", s, ops, -1},
		{"invalid subject", badSubject, ops, 1},
		{"operator listed twice", s, []config.Operator{bob.operator(), carol.operator(), bob.operator()}, 1},
		// One person holding two operator names could give both approvals.
		{"two operators share a key", s, []config.Operator{bob.operator(), sameKey}, 1},
		{"unparseable key", s, []config.Operator{bob.operator(), {Name: "carol", SSHPublicKey: "ssh-ed25519 AAAA"}}, 1},
		{"nameless operator", s, []config.Operator{bob.operator(), {SSHPublicKey: carol.operator().SSHPublicKey}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Check(tc.s, good, tc.ops, tc.need, t0)
			if err == nil {
				t.Fatal("Check succeeded")
			}
			for _, sentinel := range []error{ErrNotEnough, ErrExpired} {
				if errors.Is(err, sentinel) {
					t.Fatalf("Check = %v: reached a verdict", err)
				}
			}
			if v.OK() || len(v.Approvers) != 0 {
				t.Fatalf("verdict %+v counts approvals", v)
			}
		})
	}
	// The same approvals pass with valid inputs, so each refusal above is
	// due to its one change.
	if _, err := Check(s, good, ops, 2, t0); err != nil {
		t.Fatalf("baseline: %v", err)
	}
}

// TestFixtureApproval checks an approval made once with ssh-keygen over
// testdata/sshsig/message.txt: Message must still produce those bytes,
// or every stored approval would stop counting.
func TestFixtureApproval(t *testing.T) {
	s := fixtureSubject()
	if got, want := string(s.Message()), string(readFile(t, "testdata/sshsig/message.txt")); got != want {
		t.Fatalf("Message() =\n%s\nwant (testdata/sshsig/message.txt)\n%s", got, want)
	}
	op := config.Operator{Name: "alice", SSHPublicKey: string(readFile(t, "testdata/sshsig/ed25519.pub"))}
	a := Approval{Operator: "alice", Signature: string(readFile(t, "testdata/sshsig/ed25519.sig")), At: t0}
	v, err := Check(s, []Approval{a}, []config.Operator{op}, 1, t0)
	if err != nil {
		t.Fatalf("Check(fixture): %v (%+v)", err, v)
	}
	s.Requester = "alice"
	if _, err := Check(s, []Approval{a}, []config.Operator{op}, 1, t0); !errors.Is(err, ErrNotEnough) {
		t.Fatalf("fixture approval counted for another subject: %v", err)
	}
}

func fixtureSubject() Subject {
	return Subject{
		Kind:      KindZoneOverride,
		ID:        "test./2026040101",
		Digest:    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Requester: "carol",
		Expires:   time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC),
	}
}

// TestMessageDistinct: changing any one field, by any amount, changes the
// message, so an approval for one subject never verifies for another.
func TestMessageDistinct(t *testing.T) {
	base := fixtureSubject()
	variants := map[string]func(*Subject){
		"base":          func(*Subject) {},
		"kind":          func(s *Subject) { s.Kind = KindFailover },
		"id":            func(s *Subject) { s.ID = "test./2026040102" },
		"id case":       func(s *Subject) { s.ID = "TEST./2026040101" },
		"id space":      func(s *Subject) { s.ID += " " },
		"digest":        func(s *Subject) { s.Digest = digestOf("x") },
		"requester":     func(s *Subject) { s.Requester = "dave" },
		"expires 1ns":   func(s *Subject) { s.Expires = s.Expires.Add(time.Nanosecond) },
		"expires 1s":    func(s *Subject) { s.Expires = s.Expires.Add(time.Second) },
		"empty id":      func(s *Subject) { s.ID = "" },
		"id with field": func(s *Subject) { s.ID = "test./2026040101\"\nrequester \"dave" },
		"requester in id": func(s *Subject) {
			s.ID = "test./2026040101\"\ndigest \"" + s.Digest + "\"\nrequester \"carol"
			s.Requester = "x"
		},
	}
	seen := map[string]string{}
	for name, change := range variants {
		s := base
		change(&s)
		m := string(s.Message())
		if other, dup := seen[m]; dup {
			t.Errorf("variants %q and %q have the same message", name, other)
		}
		seen[m] = name
		if n := strings.Count(m, "\n"); n != 6 {
			t.Errorf("variant %q: message has %d lines, want 6:\n%s", name, n, m)
		}
	}
	// The same instant in another zone is the same subject.
	jst := base
	jst.Expires = base.Expires.In(time.FixedZone("JST", 9*3600))
	if string(jst.Message()) != string(base.Message()) || jst.Hash() != base.Hash() {
		t.Error("expiry in another time zone changed the message")
	}
}

func TestSubjectValidate(t *testing.T) {
	good := fixtureSubject()
	tests := []struct {
		name   string
		change func(*Subject)
		ok     bool
	}{
		{"good", func(*Subject) {}, true},
		{"other kind word", func(s *Subject) { s.Kind = "key-transport" }, true},
		{"unicode id", func(s *Subject) { s.ID = "例え.jp/1" }, true},
		{"empty kind", func(s *Subject) { s.Kind = "" }, false},
		{"upper-case kind", func(s *Subject) { s.Kind = "Failover" }, false},
		{"kind with space", func(s *Subject) { s.Kind = "zone override" }, false},
		{"empty id", func(s *Subject) { s.ID = "" }, false},
		{"id with newline", func(s *Subject) { s.ID = "a\nb" }, false},
		{"id with trailing space", func(s *Subject) { s.ID = "a " }, false},
		{"id too long", func(s *Subject) { s.ID = strings.Repeat("a", maxIDLen+1) }, false},
		{"id not utf-8", func(s *Subject) { s.ID = "a\xff" }, false},
		{"digest upper case", func(s *Subject) { s.Digest = strings.ToUpper(s.Digest) }, false},
		{"digest short", func(s *Subject) { s.Digest = s.Digest[:63] }, false},
		{"digest empty", func(s *Subject) { s.Digest = "" }, false},
		{"no requester", func(s *Subject) { s.Requester = "" }, false},
		{"requester with tab", func(s *Subject) { s.Requester = "a\tb" }, false},
		{"no expiry", func(s *Subject) { s.Expires = time.Time{} }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.change(&s)
			if err := s.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestCheckAcceptsSSHKeygenApprovals runs the whole rule on approvals made
// the way operators make them: ssh-keygen -Y sign over Message.
func TestCheckAcceptsSSHKeygenApprovals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bob := genKey(t, dir, "bob", "-t", "ed25519")
	carol := genKey(t, dir, "carol", "-t", "ecdsa", "-b", "256")
	ops := []config.Operator{{Name: "bob", SSHPublicKey: bob.line}, {Name: "carol", SSHPublicKey: carol.line}}
	s := Subject{Kind: KindFailover, ID: "plan-2026-04-01-a", Digest: digestOf("plan"), Requester: "alice", Expires: t0.Add(time.Hour)}
	var as []Approval
	for name, k := range map[string]testKey{"bob": bob, "carol": carol} {
		as = append(as, Approval{Operator: name, Signature: string(keygenSign(t, dir, k, Namespace, s.Message())), At: t0})
	}
	v, err := Check(s, as, ops, 2, t0)
	if err != nil {
		t.Fatalf("Check: %v (%+v)", err, v)
	}
	// Keys must not be swappable between the two names.
	as[0].Operator, as[1].Operator = as[1].Operator, as[0].Operator
	v, err = Check(s, as, ops, 1, t0)
	if !errors.Is(err, ErrNotEnough) || len(v.Rejected) != 2 || !errors.Is(v.Rejected[0].Err, ErrWrongKey) {
		t.Fatalf("swapped names: %v %+v", err, v)
	}
}
