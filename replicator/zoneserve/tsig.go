package zoneserve

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// minSecretLen is the shortest TSIG secret accepted. RFC 8945 §6 asks for
// keys at least as long as the HMAC output; 16 bytes is the floor below
// which a key is guessable offline from one captured signed message.
const minSecretLen = 16

// keyring is the server's TSIG keys, all hmac-sha256, by canonical name.
// It implements dns.TsigProvider so miekg's server verifies requests and
// signs every message of a response (including each AXFR envelope) with
// it. Key names are matched case-insensitively (RFC 8945 §4.2 compares
// names canonically); miekg's own map provider does not.
type keyring map[string][]byte

func newKeyring(secrets map[string]string) (keyring, error) {
	k := make(keyring, len(secrets))
	for name, secret := range secrets {
		if _, ok := dns.IsDomainName(name); !ok || name == "" {
			return nil, fmt.Errorf("TSIG key name %q is not a domain name", name)
		}
		raw, err := base64.StdEncoding.DecodeString(secret)
		if err != nil {
			// Never echo the secret, not even a bad one.
			return nil, fmt.Errorf("TSIG key %s: secret is not valid base64", name)
		}
		if len(raw) < minSecretLen {
			return nil, fmt.Errorf("TSIG key %s: secret is %d bytes, want at least %d", name, len(raw), minSecretLen)
		}
		k[dns.CanonicalName(name)] = raw
	}
	return k, nil
}

var errAlgorithm = errors.New("TSIG algorithm is not hmac-sha256")

func (k keyring) mac(msg []byte, t *dns.TSIG) ([]byte, error) {
	secret, ok := k[dns.CanonicalName(t.Hdr.Name)]
	if !ok {
		return nil, dns.ErrSecret
	}
	if dns.CanonicalName(t.Algorithm) != dns.HmacSHA256 {
		return nil, errAlgorithm
	}
	h := hmac.New(sha256.New, secret)
	h.Write(msg)
	return h.Sum(nil), nil
}

// Generate implements dns.TsigProvider.
func (k keyring) Generate(msg []byte, t *dns.TSIG) ([]byte, error) { return k.mac(msg, t) }

// Verify implements dns.TsigProvider.
func (k keyring) Verify(msg []byte, t *dns.TSIG) error {
	want, err := k.mac(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil {
		return dns.ErrSig
	}
	// A truncated MAC (RFC 8945 §5.2.2.1) is not accepted: nobody we
	// talk to needs it, and it weakens the check.
	if !hmac.Equal(want, got) {
		return dns.ErrSig
	}
	return nil
}
