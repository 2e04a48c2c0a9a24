// Package identity holds a site's key-transport identity: an age X25519
// identity that bundles are encrypted to, and an Ed25519 key the site signs
// bundles and receipts with. The public halves go into the deployment
// config; the private halves stay in 0600 files at the site.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
)

// signingKeyPrefix marks an Ed25519 public key in the config, so a key
// pasted into the wrong field is recognised as such.
const signingKeyPrefix = "ed25519:"

// Private is a site's private identity. Never log it.
type Private struct {
	Age     *age.X25519Identity
	Signing ed25519.PrivateKey
}

// Public is what other sites know of a site.
type Public struct {
	Age     *age.X25519Recipient
	Signing ed25519.PublicKey
}

// String keeps the private halves out of %v.
func (p *Private) String() string { return "identity.Private{" + p.Age.Recipient().String() + "}" }

// GoString keeps the private halves out of %#v.
func (p *Private) GoString() string { return p.String() }

// Files are the file names of a site's private identity.
type Files struct {
	AgeIdentity string
	SigningKey  string
}

// DefaultFiles are the file names Generate uses in dir.
func DefaultFiles(dir string) Files {
	return Files{AgeIdentity: filepath.Join(dir, "age-identity.txt"), SigningKey: filepath.Join(dir, "signing-key.txt")}
}

// Generate creates a new identity and writes its private halves to f, each
// 0600, refusing to overwrite an existing file (replacing a site's
// identity strands every bundle in flight and needs a config change).
func Generate(f Files) (*Private, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate age identity: %w", err)
	}
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	for _, p := range []string{f.AgeIdentity, f.SigningKey} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, fmt.Errorf("identity directory: %w", err)
		}
	}
	if err := writeNew(f.AgeIdentity, id.String()+"\n"); err != nil {
		return nil, err
	}
	if err := writeNew(f.SigningKey, base64.StdEncoding.EncodeToString(sk.Seed())+"\n"); err != nil {
		os.Remove(f.AgeIdentity)
		return nil, err
	}
	return &Private{Age: id, Signing: sk}, nil
}

func writeNew(path, content string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write identity file: %w", err)
	}
	if _, err := fh.WriteString(content); err != nil {
		fh.Close()
		os.Remove(path)
		return fmt.Errorf("write identity file %s: %w", path, err)
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return fmt.Errorf("fsync identity file %s: %w", path, err)
	}
	return fh.Close()
}

// Load reads a private identity. Files group or other may access are
// refused: a site identity every local user can read is already leaked.
func Load(f Files) (*Private, error) {
	a, err := readSecret(f.AgeIdentity)
	if err != nil {
		return nil, err
	}
	id, err := age.ParseX25519Identity(a)
	if err != nil {
		return nil, fmt.Errorf("age identity %s: does not parse as an AGE-SECRET-KEY", f.AgeIdentity)
	}
	s, err := readSecret(f.SigningKey)
	if err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s: want a base64 %d-byte Ed25519 seed", f.SigningKey, ed25519.SeedSize)
	}
	return &Private{Age: id, Signing: ed25519.NewKeyFromSeed(seed)}, nil
}

func readSecret(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("identity file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("identity file %s has mode %04o: group/other may access it; chmod 600 it (and consider it exposed)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("identity file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Public returns the public halves.
func (p *Private) Public() Public {
	return Public{Age: p.Age.Recipient(), Signing: p.Signing.Public().(ed25519.PublicKey)}
}

// SigningString is the config form of an Ed25519 public key.
func SigningString(pk ed25519.PublicKey) string {
	return signingKeyPrefix + base64.StdEncoding.EncodeToString(pk)
}

// ParseSigning reads the config form of an Ed25519 public key.
func ParseSigning(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), signingKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("signing public key %q: want %s<base64>", s, signingKeyPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("signing public key %q: want base64 of %d bytes", s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// ParsePublic reads the public halves as written in the config.
func ParsePublic(ageRecipient, signing string) (Public, error) {
	r, err := age.ParseX25519Recipient(strings.TrimSpace(ageRecipient))
	if err != nil {
		return Public{}, fmt.Errorf("age recipient %q: %w", ageRecipient, err)
	}
	pk, err := ParseSigning(signing)
	if err != nil {
		return Public{}, err
	}
	return Public{Age: r, Signing: pk}, nil
}

// ErrNoIdentity: the site has no identity in the config.
var ErrNoIdentity = errors.New("site has no key-transport identity in the config")
