package proof_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/keys/proof"
)

func pair(t *testing.T, dir string, alg uint8) (inventory.Pair, *zonesign.Key) {
	t.Helper()
	k, err := zonesign.GenerateKey(dir, "test.", alg, false)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := inventory.Dir{Path: dir}.List(context.Background(), "test.")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ks {
		if x.Tag == k.Tag {
			p, err := inventory.Dir{Path: dir}.Read(context.Background(), x.Name)
			if err != nil {
				t.Fatal(err)
			}
			return p, k
		}
	}
	t.Fatal("generated key not listed")
	return inventory.Pair{}, nil
}

func TestProveAndCheck(t *testing.T) {
	now := time.Now()
	for _, alg := range []uint8{dns.ECDSAP256SHA256, dns.ED25519, dns.RSASHA256} {
		p, k := pair(t, t.TempDir(), alg)
		_, other := pair(t, t.TempDir(), alg)
		nonce := []byte("0123456789abcdef")
		r, err := proof.Prove("osaka", p, k.DNSKEY, proof.AgainstPublished, "zone test. serial 7", nonce, now)
		if err != nil {
			t.Fatalf("alg %d: %v", alg, err)
		}
		if r.Tag != k.Tag || r.Digest != inventory.Digest(k.DNSKEY) || r.Against != proof.AgainstPublished {
			t.Fatalf("receipt %+v", r)
		}
		// The published DNSKEY is another key: mismatch.
		if _, err := proof.Prove("osaka", p, other.DNSKEY, proof.AgainstPublished, "x", nonce, now); !errors.Is(err, proof.ErrMismatch) {
			t.Fatalf("alg %d: proof against another DNSKEY: %v", alg, err)
		}
		if err := r.Check(other.DNSKEY, now); !errors.Is(err, proof.ErrMismatch) {
			t.Fatalf("alg %d: check against another key: %v", alg, err)
		}
		// Signed receipts: only the site's own key opens them.
		pk, sk, _ := ed25519.GenerateKey(rand.Reader)
		s, err := proof.Sign(r, sk)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := proof.Open(s, "osaka", pk); err != nil {
			t.Fatal(err)
		}
		if _, err := proof.Open(s, "tokyo", pk); !errors.Is(err, proof.ErrBadReceipt) {
			t.Fatalf("receipt opened as another site's: %v", err)
		}
		pk2, _, _ := ed25519.GenerateKey(rand.Reader)
		if _, err := proof.Open(s, "osaka", pk2); !errors.Is(err, proof.ErrBadReceipt) {
			t.Fatalf("receipt opened with another key: %v", err)
		}
		s.Receipt[10] ^= 1
		if _, err := proof.Open(s, "osaka", pk); !errors.Is(err, proof.ErrBadReceipt) {
			t.Fatalf("tampered receipt opened: %v", err)
		}
	}
}
