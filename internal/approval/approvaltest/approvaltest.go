// Package approvaltest makes operators with fresh SSH keys for tests of
// two-person approvals.
package approvaltest

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/config"
)

// Operator is a test operator and the private half of their key.
type Operator struct {
	Name   string
	Signer ssh.Signer
}

// New makes an operator with a fresh Ed25519 key and their config entry.
func New(t testing.TB, name string) (Operator, config.Operator) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	return Operator{Name: name, Signer: s}, config.Operator{Name: name, SSHPublicKey: line}
}

// Sign is o's signature over s, presented as operator `as` (a test may
// claim another operator's name to prove the claim is refused).
func (o Operator) Sign(t testing.TB, s approval.Subject, as string, at time.Time) approval.Approval {
	t.Helper()
	sig, err := approval.Sign(o.Signer, approval.Namespace, s.Message())
	if err != nil {
		t.Fatal(err)
	}
	return approval.Approval{Operator: as, Signature: string(sig), At: at}
}
