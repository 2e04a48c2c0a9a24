package approval

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/config"
)

// t0 is the fixed "now" of the pure tests; subjects expire an hour later.
var t0 = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// person is a test operator with a key made from a fixed seed, so the
// pure tests need no key generation and no tool.
type person struct {
	name   string
	signer ssh.Signer
}

func (p person) operator() config.Operator {
	return config.Operator{Name: p.name, SSHPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.signer.PublicKey())))}
}

func newPerson(t testing.TB, name string, seed byte) person {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return person{name: name, signer: s}
}

// newECDSAPerson has a P-256 key, so the rule is exercised with more than
// one key type.
func newECDSAPerson(t testing.TB, name string) person {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return person{name: name, signer: s}
}

// approve has p sign s and files it under name (normally p.name).
func approve(t testing.TB, p person, name string, s Subject, at time.Time) Approval {
	t.Helper()
	sig, err := Sign(p.signer, Namespace, s.Message())
	if err != nil {
		t.Fatalf("sign %s as %s: %v", s.Target(), p.name, err)
	}
	return Approval{Operator: name, Signature: string(sig), At: at}
}

// digestOf is a valid Digest for test content.
func digestOf(content string) string {
	h := sha256.Sum256([]byte(content))
	return hex.EncodeToString(h[:])
}
