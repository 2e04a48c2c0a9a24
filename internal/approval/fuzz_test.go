package approval

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzDecodeSignature feeds arbitrary text to the armored decoder and the
// blob parser, which read whatever an operator or an etcd record hands
// in. Neither may panic; whatever they accept must re-encode to the same
// bytes (one encoding per signature); and Verify must refuse anything not
// made by the fixture key over the fixture message.
//
// Run longer with: go test ./internal/approval -run '^$' -fuzz FuzzDecodeSignature -fuzztime 60s
func FuzzDecodeSignature(f *testing.F) {
	fixture, err := os.ReadFile("testdata/sshsig/ed25519.sig")
	if err != nil {
		f.Fatal(err)
	}
	line, err := os.ReadFile("testdata/sshsig/ed25519.pub")
	if err != nil {
		f.Fatal(err)
	}
	msg, err := os.ReadFile("testdata/sshsig/message.txt")
	if err != nil {
		f.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		f.Fatal(err)
	}
	other, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		f.Fatal(err)
	}
	otherSig, err := Sign(other, Namespace, msg)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	f.Add(otherSig)
	f.Add([]byte(armorBegin + "\n" + armorEnd + "\n"))
	f.Add([]byte(armorBegin + "\nU1NIU0lH\n" + armorEnd))
	f.Add([]byte("-----BEGIN SSH SIGNATURE----------END SSH SIGNATURE-----"))

	f.Fuzz(func(t *testing.T, in []byte) {
		raw, err := decodeArmor(in)
		if err != nil {
			if Verify(pub, Namespace, msg, in) == nil {
				t.Fatal("Verify accepted what decodeArmor refused")
			}
			return
		}
		if again, err := decodeArmor(encodeArmor(raw)); err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("armor round trip: %v", err)
		}
		b, err := parseBlob(raw)
		if err == nil && !bytes.Equal(marshalBlob(b), raw) {
			t.Fatalf("blob round trip differs:\n%x\n%x", marshalBlob(b), raw)
		}
		verr := Verify(pub, Namespace, msg, in)
		if verr == nil && !bytes.Equal(raw, mustDecode(t, fixture)) {
			// ed25519 signatures are deterministic, so the fixture's blob
			// is the only one that may verify.
			t.Fatalf("Verify accepted a blob other than the fixture's: %x", raw)
		}
		_, _ = verifyEmbedded(Namespace, msg, in)
	})
}

func mustDecode(t *testing.T, armored []byte) []byte {
	t.Helper()
	raw, err := decodeArmor(armored)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
