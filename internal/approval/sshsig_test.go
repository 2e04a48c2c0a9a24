package approval

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The interoperability tests run the real ssh-keygen: what matters is that
// an operator's `ssh-keygen -Y sign` is accepted and that anything regdr
// signs checks out with `ssh-keygen -Y verify`.

// keyTypes are the key types approvals accept, as ssh-keygen makes them.
var keyTypes = []struct {
	name string
	args []string
}{
	{"ed25519", []string{"-t", "ed25519"}},
	{"ecdsa-p256", []string{"-t", "ecdsa", "-b", "256"}},
	{"ecdsa-p384", []string{"-t", "ecdsa", "-b", "384"}},
	{"ecdsa-p521", []string{"-t", "ecdsa", "-b", "521"}},
	{"rsa-3072", []string{"-t", "rsa", "-b", "3072"}},
}

type testKey struct {
	path   string // private key file, 0600
	pub    ssh.PublicKey
	line   string // authorized_keys line
	signer ssh.Signer
}

// sshKeygen runs ssh-keygen with args and stdin, failing the test on a
// non-zero exit.
func sshKeygen(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	out, err := runKeygen(t, stdin, args...)
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func runKeygen(t *testing.T, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh-keygen", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd.CombinedOutput()
}

// genKey makes a key with ssh-keygen in dir and loads both halves.
func genKey(t *testing.T, dir, name string, typeArgs ...string) testKey {
	t.Helper()
	path := filepath.Join(dir, name)
	args := append([]string{"-q", "-N", "", "-C", name, "-f", path}, typeArgs...)
	sshKeygen(t, nil, args...)
	line, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatalf("parse %s.pub: %v", path, err)
	}
	priv, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatalf("parse private key %s: %v", name, err)
	}
	return testKey{path: path, pub: pub, line: string(line), signer: signer}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keygenSign signs msg with ssh-keygen -Y sign and returns the armored
// signature.
func keygenSign(t *testing.T, dir string, k testKey, namespace string, msg []byte, extra ...string) []byte {
	t.Helper()
	f, err := os.CreateTemp(dir, "msg-*")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeFile(t, f.Name(), msg)
	args := append([]string{"-Y", "sign", "-q", "-n", namespace, "-f", k.path}, extra...)
	sshKeygen(t, nil, append(args, f.Name())...)
	return readFile(t, f.Name()+".sig")
}

// keygenVerify runs ssh-keygen -Y verify for principal "op" holding
// key k in namespace "regdr".
func keygenVerify(t *testing.T, dir string, k testKey, msg, armored []byte) ([]byte, error) {
	t.Helper()
	allowed := filepath.Join(dir, "allowed_signers")
	writeFile(t, allowed, []byte(`op namespaces="regdr" `+k.line))
	sig := filepath.Join(dir, "approval.sig")
	writeFile(t, sig, armored)
	return runKeygen(t, msg, "-Y", "verify", "-f", allowed, "-I", "op", "-n", Namespace, "-s", sig)
}

func TestSSHKeygenSignatureVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := []byte("regdr approval v1\nkind \"failover\"\n")
	for _, kt := range keyTypes {
		k := genKey(t, dir, kt.name, kt.args...)
		for _, hash := range []string{"sha512", "sha256"} {
			t.Run(kt.name+"/"+hash, func(t *testing.T) {
				armored := keygenSign(t, dir, k, Namespace, msg, "-O", "hashalg="+hash)
				b, err := parseArmored(armored)
				if err != nil {
					t.Fatalf("parse ssh-keygen signature: %v", err)
				}
				if b.HashAlg != hash {
					t.Fatalf("ssh-keygen used hash %q, want %q", b.HashAlg, hash)
				}
				if err := Verify(k.pub, Namespace, msg, armored); err != nil {
					t.Fatalf("Verify(ssh-keygen signature): %v", err)
				}
				// The encoder writes byte for byte what ssh-keygen writes.
				raw, _ := decodeArmor(armored)
				if got := encodeArmor(raw); !bytes.Equal(got, armored) {
					t.Errorf("encodeArmor differs from ssh-keygen:\n%s\nwant\n%s", got, armored)
				}
			})
		}
	}
}

func TestSignVerifiesWithSSHKeygen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := []byte("regdr approval v1\nkind \"zone-override\"\n")
	for _, kt := range keyTypes {
		k := genKey(t, dir, kt.name, kt.args...)
		t.Run(kt.name, func(t *testing.T) {
			armored, err := Sign(k.signer, Namespace, msg)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			out, err := keygenVerify(t, dir, k, msg, armored)
			if err != nil {
				t.Fatalf("ssh-keygen -Y verify refused Sign's signature: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "Good") {
				t.Fatalf("ssh-keygen -Y verify said %q", out)
			}
			// The same check must fail for another message, or the line
			// above proves nothing.
			if out, err := keygenVerify(t, dir, k, append(msg, 'x'), armored); err == nil {
				t.Fatalf("ssh-keygen -Y verify accepted another message: %s", out)
			}
			b, _ := parseArmored(armored)
			if b.HashAlg != "sha512" {
				t.Errorf("Sign used %q, want sha512", b.HashAlg)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := []byte("approve plan 42\n")
	ed := genKey(t, dir, "alice", "-t", "ed25519")
	ec := genKey(t, dir, "bob", "-t", "ecdsa", "-b", "256")
	rsa := genKey(t, dir, "carol", "-t", "rsa", "-b", "3072")
	weak := genKey(t, dir, "weak", "-t", "rsa", "-b", "1024")

	edSig := keygenSign(t, dir, ed, Namespace, msg)
	ecSig := keygenSign(t, dir, ec, Namespace, msg)

	// sha1RSA is a correct signature with ssh-rsa (RSA over SHA-1), which
	// OpenSSH refuses in SSHSIG and so do we.
	sha1RSA := func() []byte {
		as := rsa.signer.(ssh.AlgorithmSigner)
		sig, err := as.SignWithAlgorithm(rand.Reader, signedData(Namespace, "sha512", msg), ssh.KeyAlgoRSA)
		if err != nil {
			t.Fatal(err)
		}
		return encodeArmor(marshalBlob(sigBlob{PublicKey: rsa.pub.Marshal(), Namespace: Namespace, HashAlg: "sha512", Signature: ssh.Marshal(sig)}))
	}()
	// otherHash claims a hash algorithm outside the two accepted.
	otherHash := func() []byte {
		sig, err := ed.signer.Sign(rand.Reader, signedData(Namespace, "sha1", msg))
		if err != nil {
			t.Fatal(err)
		}
		return encodeArmor(marshalBlob(sigBlob{PublicKey: ed.pub.Marshal(), Namespace: Namespace, HashAlg: "sha1", Signature: ssh.Marshal(sig)}))
	}()

	tests := []struct {
		name      string
		pub       ssh.PublicKey
		namespace string
		msg       []byte
		armored   []byte
		want      error
	}{
		{"another message", ed.pub, Namespace, []byte("approve plan 43\n"), edSig, ErrBadSignature},
		{"empty message", ed.pub, Namespace, nil, edSig, ErrBadSignature},
		{"another namespace", ed.pub, Namespace, msg, keygenSign(t, dir, ed, "file", msg), ErrWrongNamespace},
		{"expected another namespace", ed.pub, "regdr-test", msg, edSig, ErrWrongNamespace},
		{"another key", ec.pub, Namespace, msg, edSig, ErrWrongKey},
		{"another key ecdsa", ed.pub, Namespace, msg, ecSig, ErrWrongKey},
		{"ssh-rsa sha1 signature", rsa.pub, Namespace, msg, sha1RSA, ErrBadSignature},
		{"hash sha1", ed.pub, Namespace, msg, otherHash, ErrBadSignature},
		{"weak rsa key", weak.pub, Namespace, msg, keygenSign(t, dir, weak, Namespace, msg), ErrBadSignature},
		{"not armored", ed.pub, Namespace, msg, []byte("hello"), ErrBadSignature},
		{"empty", ed.pub, Namespace, msg, nil, ErrBadSignature},
		{"text after end", ed.pub, Namespace, msg, append(bytes.Clone(edSig), "and more\n"...), ErrBadSignature},
		{"text before begin", ed.pub, Namespace, msg, append([]byte("note\n"), edSig...), ErrBadSignature},
		{"armor char changed", ed.pub, Namespace, msg, flipArmorChar(edSig), ErrBadSignature},
		{"truncated", ed.pub, Namespace, msg, truncateBlob(t, edSig), ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.pub, tc.namespace, tc.msg, tc.armored)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify error %v does not wrap ErrBadSignature", err)
			}
		})
	}

	// Sanity: the unmodified signatures verify, so the refusals above are
	// about the modification.
	for _, c := range []struct {
		k   testKey
		sig []byte
	}{{ed, edSig}, {ec, ecSig}} {
		if err := Verify(c.k.pub, Namespace, msg, c.sig); err != nil {
			t.Fatalf("unmodified signature: %v", err)
		}
	}
}

// TestVerifyRefusesEveryFlippedByte flips each byte of the binary
// signature in turn: no single-byte change may verify.
func TestVerifyRefusesEveryFlippedByte(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	msg := []byte("approve plan 42\n")
	for _, kt := range keyTypes[:2] {
		k := genKey(t, dir, kt.name, kt.args...)
		raw, err := decodeArmor(keygenSign(t, dir, k, Namespace, msg))
		if err != nil {
			t.Fatal(err)
		}
		for i := range raw {
			mut := bytes.Clone(raw)
			mut[i] ^= 0x01
			if err := Verify(k.pub, Namespace, msg, encodeArmor(mut)); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("%s: byte %d of %d flipped: Verify = %v, want ErrBadSignature", kt.name, i, len(raw), err)
			}
		}
	}
}

func TestSignRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ed := genKey(t, dir, "alice", "-t", "ed25519")
	weak := genKey(t, dir, "weak", "-t", "rsa", "-b", "1024")
	if _, err := Sign(ed.signer, "", []byte("m")); err == nil {
		t.Error("Sign with empty namespace succeeded")
	}
	if _, err := Sign(weak.signer, Namespace, []byte("m")); err == nil {
		t.Error("Sign with a 1024-bit RSA key succeeded")
	}
}

// TestFixtureSignature checks a signature made once by ssh-keygen
// (OpenSSH 9.2) and kept in testdata, over the message format v1: stored
// approvals must keep verifying whatever changes here.
func TestFixtureSignature(t *testing.T) {
	line := readFile(t, "testdata/sshsig/ed25519.pub")
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	msg := readFile(t, "testdata/sshsig/message.txt")
	sig := readFile(t, "testdata/sshsig/ed25519.sig")
	if err := Verify(pub, Namespace, msg, sig); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if err := Verify(pub, Namespace, append(bytes.Clone(msg), '\n'), sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("fixture over changed message: %v, want ErrBadSignature", err)
	}
}

func TestDecodeArmorTolerates(t *testing.T) {
	sig := readFile(t, "testdata/sshsig/ed25519.sig")
	want, err := decodeArmor(sig)
	if err != nil {
		t.Fatal(err)
	}
	body := base64.StdEncoding.EncodeToString(want)
	tests := []struct {
		name string
		in   string
	}{
		{"crlf", strings.ReplaceAll(string(sig), "\n", "\r\n")},
		{"one line body", armorBegin + "\n" + body + "\n" + armorEnd},
		{"surrounding blank lines", "\n\n  " + string(sig) + "\n\n"},
		{"indented body", armorBegin + "\n  " + body[:40] + "\n\t" + body[40:] + "\n" + armorEnd + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeArmor([]byte(tc.in))
			if err != nil {
				t.Fatalf("decodeArmor: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("decoded blob differs")
			}
		})
	}
	if _, err := decodeArmor(bytes.Repeat([]byte("A"), maxArmored+1)); err == nil {
		t.Error("decodeArmor accepted an oversized input")
	}
}

// flipArmorChar changes one base64 character in the middle of the first
// body line.
func flipArmorChar(armored []byte) []byte {
	out := bytes.Clone(armored)
	i := len(armorBegin) + 1 + 30
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}

// truncateBlob cuts the last byte off the binary signature and armors
// the rest, so the armor is sound but the blob is short.
func truncateBlob(t *testing.T, armored []byte) []byte {
	t.Helper()
	raw, err := decodeArmor(armored)
	if err != nil {
		t.Fatal(err)
	}
	return encodeArmor(raw[:len(raw)-1])
}
