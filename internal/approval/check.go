package approval

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/config"
)

// Expected outcomes of Check and Approve, for errors.Is. ErrBadSignature
// (sshsig.go) is the fifth.
var (
	// ErrExpired: the subject's window is over, or the approval was given
	// after it.
	ErrExpired = errors.New("approval window expired")
	// ErrNotEnough: fewer valid approvals from distinct operators than
	// needed.
	ErrNotEnough = errors.New("not enough approvals")
	// ErrSelfApproval: the requester approved their own request.
	ErrSelfApproval = errors.New("requester cannot approve own request")
	// ErrUnknownOperator: the approval names no configured operator.
	ErrUnknownOperator = errors.New("not a configured operator")
	// ErrDuplicate: the operator has approved this subject already; an
	// operator counts once however often they sign.
	ErrDuplicate = errors.New("operator already approved")
)

// Rejection says why one approval did not count.
type Rejection struct {
	// Index is the approval's position in the list given to Check.
	Index    int
	Operator string
	// Err wraps one of the package's sentinels.
	Err error
}

func (r Rejection) String() string {
	return fmt.Sprintf("approval %d by %q: %v", r.Index, r.Operator, r.Err)
}

// Verdict is what Check concluded, approval by approval.
type Verdict struct {
	Need int
	// Approvers are the distinct operators whose approvals counted, in
	// the order given.
	Approvers []string
	// Rejected holds every approval that did not count, in the order
	// given, each with its reason.
	Rejected []Rejection
}

// OK reports whether enough approvals counted. Check's error says the
// same; OK is for callers that only keep the Verdict.
func (v Verdict) OK() bool { return v.Need >= 1 && len(v.Approvers) >= v.Need }

// Check decides whether approvals approve s at now: it counts approvals
// from distinct configured operators, other than the requester, whose
// signature over s.Message verifies with that operator's own key, given
// before s.Expires. need is how many such approvers are required (the
// requester is the other person, so 1 already means two people).
//
// The error is nil when enough counted; it wraps ErrExpired when now is
// past s.Expires (nothing counts then), else ErrNotEnough. Other errors
// (invalid subject, need < 1, an operator list with repeated names or
// keys) mean nothing was decided. The Verdict names every approval that
// did not count and why.
//
// Check is pure: it reads no clock and does no I/O, so a decision can be
// replayed from the stored approvals and config.
func Check(s Subject, approvals []Approval, operators []config.Operator, need int, now time.Time) (Verdict, error) {
	v := Verdict{Need: need}
	if need < 1 {
		return v, fmt.Errorf("check approvals of %s: need %d: must be at least 1", s.Target(), need)
	}
	if err := s.Validate(); err != nil {
		return v, fmt.Errorf("check approvals: %w", err)
	}
	keys, err := operatorKeys(operators)
	if err != nil {
		return v, fmt.Errorf("check approvals of %s: %w", s.Target(), err)
	}
	msg := s.Message()
	expired := now.After(s.Expires)
	counted := map[string]bool{}
	for i, a := range approvals {
		err := judge(s, msg, a, keys, counted, expired)
		if err != nil {
			v.Rejected = append(v.Rejected, Rejection{Index: i, Operator: a.Operator, Err: err})
			continue
		}
		counted[a.Operator] = true
		v.Approvers = append(v.Approvers, a.Operator)
	}
	if expired {
		return v, fmt.Errorf("check approvals of %s: expired at %s, now %s: %w",
			s.Target(), s.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrExpired)
	}
	if len(v.Approvers) < need {
		return v, fmt.Errorf("check approvals of %s: %d of %d needed (%s; %d not counted): %w",
			s.Target(), len(v.Approvers), need, approverList(v.Approvers), len(v.Rejected), ErrNotEnough)
	}
	return v, nil
}

// judge returns why a does not count, or nil. The order of the checks
// decides which reason an operator is told; all of them must pass.
func judge(s Subject, msg []byte, a Approval, keys map[string]ssh.PublicKey, counted map[string]bool, expired bool) error {
	if expired {
		return fmt.Errorf("subject expired at %s: %w", s.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	if a.At.After(s.Expires) {
		return fmt.Errorf("given at %s, after expiry at %s: %w",
			a.At.UTC().Format(time.RFC3339), s.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	if a.Operator == s.Requester {
		return fmt.Errorf("%q requested %s: %w", a.Operator, s.Target(), ErrSelfApproval)
	}
	key, ok := keys[a.Operator]
	if !ok {
		return fmt.Errorf("%q: %w", a.Operator, ErrUnknownOperator)
	}
	if err := Verify(key, Namespace, msg, []byte(a.Signature)); err != nil {
		return err
	}
	if counted[a.Operator] {
		return fmt.Errorf("%q: %w", a.Operator, ErrDuplicate)
	}
	return nil
}

// operatorKeys maps operator names to their keys. Repeated names or keys
// are refused: either would let one person count twice. Config validation
// refuses them too; Check does not rely on it having run.
func operatorKeys(operators []config.Operator) (map[string]ssh.PublicKey, error) {
	keys := make(map[string]ssh.PublicKey, len(operators))
	byKey := make(map[string]string, len(operators))
	for i, o := range operators {
		if o.Name == "" {
			return nil, fmt.Errorf("operators[%d]: name is empty", i)
		}
		if _, dup := keys[o.Name]; dup {
			return nil, fmt.Errorf("operators[%d]: operator %q listed twice", i, o.Name)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o.SSHPublicKey))
		if err != nil {
			return nil, fmt.Errorf("operators[%d] %q: ssh public key: %w", i, o.Name, err)
		}
		fp := ssh.FingerprintSHA256(pub)
		if other, dup := byKey[fp]; dup {
			return nil, fmt.Errorf("operators[%d] %q: same key %s as %q", i, o.Name, fp, other)
		}
		byKey[fp] = o.Name
		keys[o.Name] = pub
	}
	return keys, nil
}

func approverList(names []string) string {
	if len(names) == 0 {
		return "none counted"
	}
	return "counted " + strings.Join(names, ", ")
}
