// Package proof shows that a site can sign with a DNSSEC key: the site
// signs a fresh challenge RRset with the private key it holds, the
// signature is verified against the DNSKEY the world sees (the published
// zone's, or the sender's .key before the key is published), and the
// result is a receipt the site signs with its Ed25519 identity. Anyone
// holding the config can check a receipt later, and re-verify the RRSIG in
// it against a DNSKEY, without the private key.
package proof

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/keys/inventory"
)

// Where a proof was verified.
const (
	// AgainstPublished: the DNSKEY of the site's currently published zone
	// version.
	AgainstPublished = "published-zone"
	// AgainstSender: the .key the sending site shipped (the key is not in
	// a published version yet, e.g. a ZSK before its rollover).
	AgainstSender = "sender-key"
	// AgainstOwn: the site's own .key file (a key made at this site, not
	// published yet).
	AgainstOwn = "own-key"
)

// ChallengeLabel is the owner name prefix of the challenge RRset.
const ChallengeLabel = "_regdr-proof"

// validity is how long the challenge signature is valid: long enough to
// re-verify a receipt for as long as the key lives (receipts are re-made
// on every bundle), short enough to be useless as a published signature.
const validity = 400 * 24 * time.Hour

// Errors, for errors.Is.
var (
	// ErrMismatch: the private key's signature does not verify with the
	// DNSKEY it was checked against.
	ErrMismatch = errors.New("private key does not match the DNSKEY")
	// ErrBadReceipt: a receipt's signature or content does not check.
	ErrBadReceipt = errors.New("receipt does not verify")
)

// Receipt records that Site proved possession of one key.
type Receipt struct {
	Site      string `json:"site"`
	Zone      string `json:"zone"`
	Tag       uint16 `json:"tag"`
	Algorithm uint8  `json:"algorithm"`
	KSK       bool   `json:"ksk"`
	// Digest is the public key digest (inventory.Digest) proved.
	Digest string `json:"digest"`
	// Against is AgainstPublished or AgainstSender; AgainstDetail names
	// the zone serial or the key file.
	Against       string `json:"against"`
	AgainstDetail string `json:"against_detail"`
	// Challenge and RRSIG are the signed TXT RRset and its signature in
	// presentation form, so the proof can be re-verified.
	Challenge string    `json:"challenge"`
	RRSIG     string    `json:"rrsig"`
	Nonce     string    `json:"nonce"`
	Bundle    string    `json:"bundle,omitempty"` // which bundle brought the key
	Time      time.Time `json:"time"`
}

// Signed is a receipt with the proving site's Ed25519 signature over the
// exact receipt bytes.
type Signed struct {
	Receipt []byte `json:"receipt"`
	Sig     []byte `json:"sig"`
}

// Prove signs a challenge carrying nonce with pair's private key and
// verifies it against `against` (the DNSKEY from the published zone or
// the sender's .key file; kind and detail say which).
func Prove(site string, pair inventory.Pair, against *dns.DNSKEY, kind, detail string, nonce []byte, now time.Time) (Receipt, error) {
	dk, err := inventory.ParseDNSKEY(pair.Public, pair.Key.Name+".key")
	if err != nil {
		return Receipt{}, err
	}
	signer, err := inventory.ParsePrivate(dk, pair.Private, pair.Key.Name+".private")
	if err != nil {
		return Receipt{}, fmt.Errorf("prove %s: %w: %v", pair.Key, ErrMismatch, err)
	}
	zone := dns.CanonicalName(dk.Hdr.Name)
	txt := &dns.TXT{
		Hdr: dns.RR_Header{Name: ChallengeLabel + "." + zone, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 0},
		Txt: []string{"site=" + site, "nonce=" + hex.EncodeToString(nonce)},
	}
	sig := &dns.RRSIG{
		Hdr:        dns.RR_Header{Name: txt.Hdr.Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET},
		Algorithm:  dk.Algorithm,
		KeyTag:     dk.KeyTag(),
		SignerName: zone,
		Inception:  uint32(now.Add(-time.Hour).Unix()),
		Expiration: uint32(now.Add(validity).Unix()),
	}
	if err := sig.Sign(signer, []dns.RR{txt}); err != nil {
		return Receipt{}, fmt.Errorf("prove %s: sign challenge: %w", pair.Key, err)
	}
	r := Receipt{
		Site: site, Zone: zone, Tag: dk.KeyTag(), Algorithm: dk.Algorithm, KSK: dk.Flags&dns.SEP != 0,
		Digest: inventory.Digest(dk), Against: kind, AgainstDetail: detail,
		Challenge: txt.String(), RRSIG: sig.String(), Nonce: hex.EncodeToString(nonce), Time: now.UTC(),
	}
	if err := r.Check(against, now); err != nil {
		return r, err
	}
	return r, nil
}

// Check re-verifies the receipt's challenge signature with dk at now: the
// receipt is for dk (same digest) and the signature verifies.
func (r Receipt) Check(dk *dns.DNSKEY, now time.Time) error {
	if dk == nil {
		return fmt.Errorf("check proof of %s tag %d: %w: no DNSKEY to check against", r.Zone, r.Tag, ErrMismatch)
	}
	if d := inventory.Digest(dk); d != r.Digest {
		return fmt.Errorf("check proof of %s tag %d: %w: receipt is for key %.12s, DNSKEY is %.12s", r.Zone, r.Tag, ErrMismatch, r.Digest, d)
	}
	crr, err := dns.NewRR(r.Challenge)
	if err != nil || crr == nil {
		return fmt.Errorf("check proof of %s tag %d: %w: challenge does not parse", r.Zone, r.Tag, ErrBadReceipt)
	}
	srr, err := dns.NewRR(r.RRSIG)
	if err != nil || srr == nil {
		return fmt.Errorf("check proof of %s tag %d: %w: RRSIG does not parse", r.Zone, r.Tag, ErrBadReceipt)
	}
	sig, ok := srr.(*dns.RRSIG)
	if !ok {
		return fmt.Errorf("check proof of %s tag %d: %w: RRSIG field holds a %s", r.Zone, r.Tag, ErrBadReceipt, dns.TypeToString[srr.Header().Rrtype])
	}
	if !strings.Contains(r.Challenge, r.Nonce) || !strings.HasPrefix(dns.CanonicalName(crr.Header().Name), ChallengeLabel+".") {
		return fmt.Errorf("check proof of %s tag %d: %w: challenge is not this receipt's", r.Zone, r.Tag, ErrBadReceipt)
	}
	if err := sig.Verify(dk, []dns.RR{crr}); err != nil {
		return fmt.Errorf("check proof of %s tag %d: %w: %v", r.Zone, r.Tag, ErrMismatch, err)
	}
	if !sig.ValidityPeriod(now) {
		return fmt.Errorf("check proof of %s tag %d: %w: challenge signature not valid at %s", r.Zone, r.Tag, ErrBadReceipt, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Sign signs r with the site's Ed25519 key.
func Sign(r Receipt, sk ed25519.PrivateKey) (Signed, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return Signed{}, fmt.Errorf("sign receipt of %s tag %d: %w", r.Zone, r.Tag, err)
	}
	return Signed{Receipt: b, Sig: ed25519.Sign(sk, b)}, nil
}

// Open checks the signature of s with the site's public key from the
// config and returns the receipt; the receipt must name site.
func Open(s Signed, site string, pk ed25519.PublicKey) (Receipt, error) {
	if len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(pk, s.Receipt, s.Sig) {
		return Receipt{}, fmt.Errorf("receipt from %s: %w: signature", site, ErrBadReceipt)
	}
	var r Receipt
	if err := json.Unmarshal(s.Receipt, &r); err != nil {
		return Receipt{}, fmt.Errorf("receipt from %s: %w: %v", site, ErrBadReceipt, err)
	}
	if r.Site != site {
		return Receipt{}, fmt.Errorf("receipt from %s: %w: it names site %s", site, ErrBadReceipt, r.Site)
	}
	return r, nil
}
