package gates

// Fast ECDSAP256SHA256 verification. A TLD zone is signed by one or two
// keys, and each of them verifies hundreds of thousands of signatures;
// crypto/ecdsa starts every verification from the bare public key, and
// its variable-base scalar multiplication (255 point doublings) was
// two thirds of the time `regdr zone check` took on a 100,000-delegation
// zone. Here each key gets a table of its multiples once (32 windows of 8
// bits: j·256^i·Q), and u2·Q becomes at most 32 table additions.
//
// Only the curve arithmetic is new: the signed data is what miekg/dns
// builds for its own Verify (see signedHash), and every check miekg's
// Verify makes before the cryptography is repeated in canVerifyFast, with
// anything unusual left to miekg. The tests compare the verdict with
// crypto/ecdsa and with miekg on valid, tampered and malformed signatures.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"strings"

	"filippo.io/nistec"
	"github.com/miekg/dns"
)

// p256N is the order of the P-256 group.
var p256N = elliptic.P256().Params().N

const (
	p256Windows = 32  // 8-bit windows of a 256-bit scalar
	p256Entries = 255 // non-zero window values
)

// p256Table holds j·256^i·Q for the 32 windows i and j = 1..255.
type p256Table [p256Windows][p256Entries]nistec.P256Point

// newP256Table builds q's table: 8160 additions, the work of a few dozen
// plain verifications, once per key.
func newP256Table(q *nistec.P256Point) *p256Table {
	t := new(p256Table)
	base := nistec.NewP256Point().Set(q)
	for i := range p256Windows {
		t[i][0].Set(base)
		for j := 1; j < p256Entries; j++ {
			t[i][j].Add(&t[i][j-1], base)
		}
		// next window's base: 256·base = base + 255·base
		base.Add(&t[i][p256Entries-1], base)
	}
	return t
}

// mult sets p = k·Q for a 32-byte big-endian scalar k.
func (t *p256Table) mult(p *nistec.P256Point, k *[32]byte) {
	p.Set(nistec.NewP256Point()) // infinity
	for i := range p256Windows {
		if b := k[31-i]; b != 0 {
			p.Add(p, &t[i][b-1])
		}
	}
}

// p256Key is one DNSKEY prepared for fast verification.
type p256Key struct {
	table *p256Table
}

// p256Keys prepares every ECDSAP256SHA256 key of keys. The map is only
// read afterwards, by all verification workers at once.
func p256Keys(keys zoneKeys) map[*dns.DNSKEY]*p256Key {
	out := map[*dns.DNSKEY]*p256Key{}
	for _, ks := range keys.byTag {
		for _, k := range ks {
			if pub := dnskeyP256(k); pub != nil {
				out[k] = &p256Key{table: newP256Table(pub)}
			}
		}
	}
	return out
}

// dnskeyP256 decodes an ECDSAP256SHA256 public key (RFC 6605 §4: X and Y,
// 32 bytes each), nil if it is not a valid curve point.
func dnskeyP256(k *dns.DNSKEY) *nistec.P256Point {
	if k.Algorithm != dns.ECDSAP256SHA256 {
		return nil
	}
	raw, err := fromBase64(k.PublicKey)
	if err != nil || len(raw) != 64 {
		return nil
	}
	p, err := nistec.NewP256Point().SetBytes(append([]byte{4}, raw...))
	if err != nil || p.IsInfinity() == 1 {
		return nil
	}
	return p
}

// p256Scratch is one worker's big integers, reused from one verification
// to the next (a zone has a million signatures; the garbage adds up).
type p256Scratch struct {
	r, s, e, w, t big.Int
	u1, u2        [32]byte
	p1, p2        nistec.P256Point
}

// verify is ECDSA verification (FIPS 186-5 §6.4.2) of signature sig
// (r‖s, 32 bytes each) over the SHA-256 digest hash.
func (pk *p256Key) verify(hash, sig []byte, x *p256Scratch) bool {
	if len(sig) != 64 || len(hash) != 32 {
		return false
	}
	r, s := x.r.SetBytes(sig[:32]), x.s.SetBytes(sig[32:])
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(p256N) >= 0 || s.Cmp(p256N) >= 0 {
		return false
	}
	e := x.e.SetBytes(hash)
	e.Mod(e, p256N)
	w := x.w.ModInverse(s, p256N)
	if w == nil {
		return false
	}
	x.t.Mul(e, w).Mod(&x.t, p256N).FillBytes(x.u1[:])
	x.t.Mul(r, w).Mod(&x.t, p256N).FillBytes(x.u2[:])

	if _, err := x.p1.ScalarBaseMult(x.u1[:]); err != nil {
		return false
	}
	pk.table.mult(&x.p2, &x.u2)
	x.p1.Add(&x.p1, &x.p2)
	if x.p1.IsInfinity() == 1 {
		return false
	}
	xb, err := x.p1.BytesX()
	if err != nil {
		return false
	}
	v := x.t.SetBytes(xb)
	return v.Mod(v, p256N).Cmp(r) == 0
}

// canVerifyFast reports whether miekg's Verify of sig with key over rrset
// would reach the cryptography with exactly the data signedHash computes:
// its own preliminary checks pass, and the fields RRSIG.Sign would
// recompute (original TTL, labels) are what Sign would put there. Anything
// else goes to miekg's Verify, which decides (and reports) it as before.
func canVerifyFast(sig *dns.RRSIG, key *dns.DNSKEY, rrset []dns.RR) bool {
	if sig.Algorithm != dns.ECDSAP256SHA256 || key.Algorithm != dns.ECDSAP256SHA256 ||
		sig.KeyTag == 0 || sig.OrigTtl == 0 || sig.SignerName == "" || !dns.IsRRset(rrset) {
		return false
	}
	signer := dns.CanonicalName(sig.SignerName)
	h0 := rrset[0].Header()
	labels := uint8(dns.CountLabel(h0.Name))
	if strings.HasPrefix(h0.Name, "*") {
		labels--
	}
	return sig.KeyTag == key.KeyTag() && sig.Hdr.Class == key.Hdr.Class &&
		strings.EqualFold(signer, key.Hdr.Name) && key.Protocol == 3 && key.Flags&dns.ZONE != 0 &&
		h0.Class == sig.Hdr.Class && h0.Rrtype == sig.TypeCovered && strings.EqualFold(h0.Name, sig.Hdr.Name) &&
		strings.HasSuffix(dns.CanonicalName(h0.Name), signer) && sig.Labels == labels
}

// errCaptured stops RRSIG.Sign once it has handed over the digest.
var errCaptured = errors.New("digest captured")

// digestCatcher is a crypto.Signer that keeps the digest it is asked to
// sign instead of signing it. It also carries the worker's scratch space.
type digestCatcher struct {
	digest  []byte
	scratch p256Scratch
}

func (c *digestCatcher) Public() crypto.PublicKey { return (*ecdsa.PublicKey)(nil) }

func (c *digestCatcher) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.digest = append(c.digest[:0], digest...)
	return nil, errCaptured
}

// signedHash is the SHA-256 digest of the data sig signs over rrset
// (RFC 4034 §3.1.8.1), computed by miekg's own signing code on a copy of
// sig: the same packing and canonical RRset form its Verify uses (with
// the checks of canVerifyFast, the fields Sign sets are the ones Verify
// reads).
func signedHash(sig *dns.RRSIG, rrset []dns.RR, c *digestCatcher) ([]byte, bool) {
	cp := *sig
	if err := cp.Sign(c, rrset); !errors.Is(err, errCaptured) || len(c.digest) != 32 {
		return nil, false
	}
	return c.digest, true
}

// fromBase64 decodes a DNSKEY public key or RRSIG signature field as
// miekg does.
func fromBase64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(s)
}
