// Package bundle seals DNSSEC key pairs for transport from one site to
// another through etcd, opens them at the receiver, and installs them.
//
// A bundle is a JSON envelope of three parts: a header (from, to, seq,
// time, SHA-256 of the ciphertext) signed with the sender's Ed25519 key,
// the signature, and the age ciphertext of the key files encrypted to the
// receiver's X25519 recipient. Only the envelope travels; etcd never holds
// a private key in the clear.
//
// The receiver checks, in this order and before decrypting anything: size,
// shape, addressee, signer known to the config, signature, ciphertext hash,
// sequence newer than the last accepted. Then it decrypts and validates
// every pair (each private key must sign what its DNSKEY verifies), and
// only when the whole bundle is good does Install write a file.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/regdr/regdr/keys/inventory"
)

// Version is the envelope format version.
const Version = 1

// DefaultMaxBytes is the envelope size limit when the config sets none: a
// bundle of a few dozen keys is a few tens of KiB; etcd's request limit is
// 1.5 MiB, and one oversized value slows every watcher.
const DefaultMaxBytes = 256 << 10

// Refusals, for errors.Is. Each is returned wrapped with the bundle's
// from/to/seq when known.
var (
	ErrTooLarge       = errors.New("bundle exceeds the size limit")
	ErrMalformed      = errors.New("bundle is malformed")
	ErrWrongRecipient = errors.New("bundle is addressed to another site")
	ErrUnknownSigner  = errors.New("bundle sender is not a site with an identity in the config")
	ErrBadSignature   = errors.New("bundle signature does not verify against the sender's key in the config")
	ErrCiphertext     = errors.New("bundle ciphertext does not match its signed hash")
	ErrReplay         = errors.New("bundle sequence is not newer than the last accepted")
	ErrDecrypt        = errors.New("bundle does not decrypt with this site's identity")
	ErrBadKey         = errors.New("bundle holds a key that does not validate")
	ErrTagConflict    = errors.New("a different key with the same name is already installed")
)

// Header is the signed part of a bundle.
type Header struct {
	V    int       `json:"v"`
	From string    `json:"from"`
	To   string    `json:"to"`
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// CiphertextSHA256 binds the signature to the ciphertext: a flipped
	// byte is caught before the ciphertext reaches the decrypter.
	CiphertextSHA256 string `json:"ciphertext_sha256"`
	// Keys names the keys inside (stems only), for logs and status.
	Keys []string `json:"keys,omitempty"`
}

func (h Header) String() string {
	return fmt.Sprintf("bundle %s→%s seq %d", h.From, h.To, h.Seq)
}

// envelope is what is stored in etcd. Header is the exact signed bytes, so
// verification never depends on re-encoding.
type envelope struct {
	Header     []byte `json:"header"`
	Sig        []byte `json:"sig"`
	Ciphertext []byte `json:"ciphertext"`
}

// plaintext is what the ciphertext holds. From, To and Seq repeat the
// header so a ciphertext cannot be re-used under another header even by
// the holder of a signing key.
type plaintext struct {
	From string  `json:"from"`
	To   string  `json:"to"`
	Seq  uint64  `json:"seq"`
	Keys []entry `json:"keys"`
}

type entry struct {
	Name    string `json:"name"`
	Public  []byte `json:"public"`
	Private []byte `json:"private"`
}

// Seal packs pairs for h.To, encrypted to recipient and signed with
// signer. h.CiphertextSHA256, h.Keys and h.V are filled in.
func Seal(h Header, pairs []inventory.Pair, recipient age.Recipient, signer ed25519.PrivateKey, maxBytes int) ([]byte, Header, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	pt := plaintext{From: h.From, To: h.To, Seq: h.Seq}
	h.Keys = nil
	for _, p := range pairs {
		pt.Keys = append(pt.Keys, entry{Name: p.Key.Name, Public: p.Public, Private: p.Private})
		h.Keys = append(h.Keys, p.Key.Name)
	}
	ptb, err := json.Marshal(pt)
	if err != nil {
		return nil, h, fmt.Errorf("seal %s: %w", h, err)
	}
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, recipient)
	if err != nil {
		return nil, h, fmt.Errorf("seal %s: encrypt: %w", h, err)
	}
	if _, err := w.Write(ptb); err != nil {
		return nil, h, fmt.Errorf("seal %s: encrypt: %w", h, err)
	}
	if err := w.Close(); err != nil {
		return nil, h, fmt.Errorf("seal %s: encrypt: %w", h, err)
	}
	clear(ptb)
	sum := sha256.Sum256(ct.Bytes())
	h.V = Version
	h.CiphertextSHA256 = hex.EncodeToString(sum[:])
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, h, fmt.Errorf("seal %s: %w", h, err)
	}
	env, err := json.Marshal(envelope{Header: hb, Sig: ed25519.Sign(signer, hb), Ciphertext: ct.Bytes()})
	if err != nil {
		return nil, h, fmt.Errorf("seal %s: %w", h, err)
	}
	if len(env) > maxBytes {
		return nil, h, fmt.Errorf("seal %s: %d bytes: %w (%d); send fewer keys per bundle", h, len(env), ErrTooLarge, maxBytes)
	}
	return env, h, nil
}

// Sealed is a decoded, not yet verified bundle.
type Sealed struct {
	Header     Header
	header     []byte
	sig        []byte
	ciphertext []byte
}

// Decode parses an envelope without trusting it: it checks only size and
// shape. Verify must pass before Decrypt is called.
func Decode(b []byte, maxBytes int) (*Sealed, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if len(b) > maxBytes {
		return nil, fmt.Errorf("decode bundle of %d bytes: %w (%d)", len(b), ErrTooLarge, maxBytes)
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("decode bundle: %w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode bundle: %w: trailing data", ErrMalformed)
	}
	if len(env.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("decode bundle: %w: signature is %d bytes, want %d", ErrMalformed, len(env.Sig), ed25519.SignatureSize)
	}
	if len(env.Ciphertext) == 0 {
		return nil, fmt.Errorf("decode bundle: %w: no ciphertext", ErrMalformed)
	}
	var h Header
	hd := json.NewDecoder(bytes.NewReader(env.Header))
	hd.DisallowUnknownFields()
	if err := hd.Decode(&h); err != nil {
		return nil, fmt.Errorf("decode bundle header: %w: %v", ErrMalformed, err)
	}
	switch {
	case h.V != Version:
		return nil, fmt.Errorf("decode %s: %w: format version %d, want %d", h, ErrMalformed, h.V, Version)
	case h.From == "" || h.To == "":
		return nil, fmt.Errorf("decode %s: %w: from and to are required", h, ErrMalformed)
	case h.Seq == 0:
		return nil, fmt.Errorf("decode %s: %w: sequence 0", h, ErrMalformed)
	case len(h.CiphertextSHA256) != 64:
		return nil, fmt.Errorf("decode %s: %w: ciphertext hash is not hex SHA-256", h, ErrMalformed)
	}
	return &Sealed{Header: h, header: env.Header, sig: env.Sig, ciphertext: env.Ciphertext}, nil
}

// Signers returns the Ed25519 public key of a site from the config, false
// for a site that is unknown or has no identity.
type Signers func(site string) (ed25519.PublicKey, bool)

// Verify checks that the bundle is for me, signed by its sender's key in
// the config, carries the ciphertext that was signed, and is newer than
// lastSeq (the last bundle accepted from that sender).
func (s *Sealed) Verify(me string, signers Signers, lastSeq uint64) error {
	h := s.Header
	if h.To != me {
		return fmt.Errorf("open %s at %s: %w", h, me, ErrWrongRecipient)
	}
	if h.From == me {
		return fmt.Errorf("open %s at %s: %w: a site does not send to itself", h, me, ErrUnknownSigner)
	}
	pk, ok := signers(h.From)
	if !ok {
		return fmt.Errorf("open %s: %w", h, ErrUnknownSigner)
	}
	if !ed25519.Verify(pk, s.header, s.sig) {
		return fmt.Errorf("open %s: %w", h, ErrBadSignature)
	}
	sum := sha256.Sum256(s.ciphertext)
	if hex.EncodeToString(sum[:]) != strings.ToLower(h.CiphertextSHA256) {
		return fmt.Errorf("open %s: %w", h, ErrCiphertext)
	}
	if h.Seq <= lastSeq {
		return fmt.Errorf("open %s: %w (%d)", h, ErrReplay, lastSeq)
	}
	return nil
}

// CiphertextDigest is the hex SHA-256 of the ciphertext (the signed one,
// once Verify passed).
func (s *Sealed) CiphertextDigest() string { return s.Header.CiphertextSHA256 }

// Decrypt decrypts and validates every pair. Call only after Verify. An
// invalid pair refuses the whole bundle.
func (s *Sealed) Decrypt(id age.Identity, maxBytes int) ([]inventory.Pair, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	h := s.Header
	r, err := age.Decrypt(bytes.NewReader(s.ciphertext), id)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: %v", h, ErrDecrypt, err)
	}
	ptb, err := io.ReadAll(io.LimitReader(r, int64(maxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: %v", h, ErrDecrypt, err)
	}
	defer clear(ptb)
	if len(ptb) > maxBytes {
		return nil, fmt.Errorf("open %s: plaintext %w", h, ErrTooLarge)
	}
	var pt plaintext
	if err := json.Unmarshal(ptb, &pt); err != nil {
		// The JSON error could quote plaintext: do not include it.
		return nil, fmt.Errorf("open %s: %w: plaintext does not parse", h, ErrMalformed)
	}
	if pt.From != h.From || pt.To != h.To || pt.Seq != h.Seq {
		return nil, fmt.Errorf("open %s: %w: plaintext names %s→%s seq %d", h, ErrMalformed, pt.From, pt.To, pt.Seq)
	}
	if len(pt.Keys) == 0 {
		return nil, fmt.Errorf("open %s: %w: no keys", h, ErrMalformed)
	}
	seen := map[string]bool{}
	var out []inventory.Pair
	for _, e := range pt.Keys {
		if seen[strings.ToLower(e.Name)] {
			return nil, fmt.Errorf("open %s: %w: key %s twice", h, ErrBadKey, e.Name)
		}
		seen[strings.ToLower(e.Name)] = true
		k, err := inventory.Describe(e.Name, e.Public, e.Private)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w: %v", h, ErrBadKey, err)
		}
		if k.State != inventory.StateOK {
			return nil, fmt.Errorf("open %s: %w: %s: %s", h, ErrBadKey, k, k.Problem)
		}
		out = append(out, inventory.Pair{Key: k, Public: e.Public, Private: e.Private})
	}
	return out, nil
}

// Open is Decode, Verify and Decrypt.
func Open(b []byte, maxBytes int, me string, signers Signers, lastSeq uint64, id age.Identity) (Header, []inventory.Pair, error) {
	s, err := Decode(b, maxBytes)
	if err != nil {
		return Header{}, nil, err
	}
	if err := s.Verify(me, signers, lastSeq); err != nil {
		return s.Header, nil, err
	}
	pairs, err := s.Decrypt(id, maxBytes)
	return s.Header, pairs, err
}
