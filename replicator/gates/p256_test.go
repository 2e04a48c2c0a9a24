package gates

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
)

// The table-based verification agrees with crypto/ecdsa on valid
// signatures, on every kind of damage, and on out-of-range values.
func TestP256VerifyMatchesECDSA(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := append(priv.X.FillBytes(make([]byte, 32)), priv.Y.FillBytes(make([]byte, 32))...)
	key := &dns.DNSKEY{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET},
		Flags: 256, Protocol: 3, Algorithm: dns.ECDSAP256SHA256, PublicKey: base64.StdEncoding.EncodeToString(raw)}
	pub := dnskeyP256(key)
	if pub == nil {
		t.Fatal("dnskeyP256 rejected a valid key")
	}
	pk := &p256Key{table: newP256Table(pub)}
	n := elliptic.P256().Params().N
	var scratch p256Scratch

	sigOf := func(r, s *big.Int) []byte {
		return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	}
	valid, agreed := 0, 0
	for i := range 300 {
		hash := sha256.Sum256(fmt.Appendf(nil, "message %d", i))
		r, s, err := ecdsa.Sign(rand.Reader, priv, hash[:])
		if err != nil {
			t.Fatal(err)
		}
		other := sha256.Sum256(fmt.Appendf(nil, "other %d", i))
		cases := []struct {
			name string
			hash []byte
			r, s *big.Int
		}{
			{"valid", hash[:], r, s},
			{"other message", other[:], r, s},
			{"r+1", hash[:], new(big.Int).Add(r, big.NewInt(1)), s},
			{"s+1", hash[:], r, new(big.Int).Add(s, big.NewInt(1))},
			{"-s (also valid in ECDSA)", hash[:], r, new(big.Int).Sub(n, s)},
			{"r and s swapped", hash[:], s, r},
		}
		for _, c := range cases {
			if c.r.Cmp(n) >= 0 || c.s.Cmp(n) >= 0 {
				continue
			}
			want := ecdsa.Verify(&priv.PublicKey, c.hash, c.r, c.s)
			if got := pk.verify(c.hash, sigOf(c.r, c.s), &scratch); got != want {
				t.Fatalf("message %d, %s: fast verify %v, crypto/ecdsa %v", i, c.name, got, want)
			}
			agreed++
			if want {
				valid++
			}
		}
	}
	if valid < 600 || agreed < 1500 {
		t.Errorf("%d cases agreed, %d valid: the test did not exercise both outcomes", agreed, valid)
	}
	hash := sha256.Sum256([]byte("edge"))
	for _, c := range []struct {
		name string
		sig  []byte
	}{
		{"r = 0", sigOf(big.NewInt(0), big.NewInt(5))},
		{"s = 0", sigOf(big.NewInt(5), big.NewInt(0))},
		{"r = n", sigOf(n, big.NewInt(5))},
		{"s = n", sigOf(big.NewInt(5), n)},
		{"short", make([]byte, 63)},
		{"all ones", bytesOf(64, 0xff)},
	} {
		if pk.verify(hash[:], c.sig, &scratch) {
			t.Errorf("%s: fast verify accepted it", c.name)
		}
	}
}

func bytesOf(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// Over a real signed zone the fast path and miekg's Verify agree on every
// signature, intact and damaged, and the fast path is the one taken.
func TestP256FastPathMatchesMiekg(t *testing.T) {
	ksk, zsk := testKeys(t, dns.ECDSAP256SHA256)
	ix := NewIndex(mustZone(t, signSmall(t, []*zonesign.Key{ksk, zsk}, zonesign.Options{})))
	keys := collectKeys(ix, ix.Apex().Set(dns.TypeDNSKEY))
	fast := p256Keys(keys)
	if len(fast) != 2 {
		t.Fatalf("%d keys prepared, want 2", len(fast))
	}
	var c digestCatcher
	took, checked := 0, 0
	for _, n := range ix.Nodes() {
		for si := range n.Sets {
			s := &n.Sets[si]
			var rrs []dns.RR
			for _, i := range s.Records() {
				rrs = append(rrs, ix.RR(i))
			}
			for _, sgi := range s.Sigs() {
				sig := ix.RR(sgi).(*dns.RRSIG)
				bad := dns.Copy(sig).(*dns.RRSIG)
				raw, _ := base64.StdEncoding.DecodeString(bad.Signature)
				raw[10] ^= 1
				bad.Signature = base64.StdEncoding.EncodeToString(raw)
				older := dns.Copy(sig).(*dns.RRSIG)
				older.Inception--
				for _, try := range []*dns.RRSIG{sig, bad, older} {
					key := keys.find(try.KeyTag, try.Algorithm)[0]
					want := try.Verify(key, rrs) == nil
					if !canVerifyFast(try, key, rrs) {
						t.Fatalf("%s/%s: fast path not taken", n.Name, typeName(s.Type))
					}
					hash, ok := signedHash(try, rrs, &c)
					raw, _ := base64.StdEncoding.DecodeString(try.Signature)
					if !ok {
						t.Fatalf("%s/%s: no signed hash", n.Name, typeName(s.Type))
					}
					if got := fast[key].verify(hash, raw, &c.scratch); got != want {
						t.Fatalf("%s/%s: fast %v, miekg %v", n.Name, typeName(s.Type), got, want)
					}
					checked++
					if want {
						took++
					}
				}
			}
		}
	}
	if took == 0 || checked < 3*took {
		t.Errorf("%d checked, %d valid", checked, took)
	}
}

// checkWireHashes compares, for every signature of ix where both apply,
// the signed-data hash built on the packed records with the one miekg's
// own signing code computes, and returns how many it compared.
func checkWireHashes(t *testing.T, ix *Index) int {
	t.Helper()
	keys := collectKeys(ix, ix.Apex().Set(dns.TypeDNSKEY))
	var (
		c        digestCatcher
		x        wireScratch
		compared int
	)
	for _, n := range ix.Nodes() {
		for si := range n.Sets {
			s := &n.Sets[si]
			var rrs []dns.RR
			for _, i := range s.Records() {
				rrs = append(rrs, ix.RR(i))
			}
			for _, sgi := range s.Sigs() {
				sw, ok := parseRRSIG(ix.Zone().Raw(int(sgi)))
				if !ok {
					t.Fatalf("%s/%s: RRSIG %d does not parse from its wire form", n.Name, typeName(s.Type), sgi)
				}
				sig := ix.RR(sgi).(*dns.RRSIG)
				if sw.keyTag != sig.KeyTag || sw.alg != sig.Algorithm || sw.expiration != sig.Expiration ||
					sw.inception != sig.Inception || sw.covered != sig.TypeCovered || sw.labels != sig.Labels || sw.origTTL != sig.OrigTtl {
					t.Fatalf("%s/%s: wire fields %+v, record %v", n.Name, typeName(s.Type), sw, sig)
				}
				got, ok := wireSignedHash(ix, n.Name, s.Records(), sw, &x)
				if !ok {
					continue
				}
				cands := keys.find(sig.KeyTag, sig.Algorithm)
				if len(cands) == 0 || !canVerifyFast(sig, cands[0], rrs) {
					t.Fatalf("%s/%s: the wire path applies where miekg's fast path does not", n.Name, typeName(s.Type))
				}
				want, ok := signedHash(sig, rrs, &c)
				if !ok {
					t.Fatalf("%s/%s: no miekg hash", n.Name, typeName(s.Type))
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s/%s: wire hash %x, miekg %x", n.Name, typeName(s.Type), got, want)
				}
				compared++
			}
		}
	}
	return compared
}

// The hash from the packed records is miekg's, names in any case
// included (owners and RDATA names are lower-cased for signing, RFC 4034
// §6.2), and a signature over it verifies.
func TestWireSignedHashMatchesMiekg(t *testing.T) {
	ksk, zsk := testKeys(t, dns.ECDSAP256SHA256)
	var mixed []dns.RR
	for _, rr := range load(t, "small.zone", "test.").RRs() {
		rr = dns.Copy(rr)
		switch x := rr.(type) {
		case *dns.NS:
			x.Ns = strings.ToUpper(x.Ns)
		case *dns.MX:
			x.Mx = strings.ToUpper(x.Mx)
			x.Hdr.Name = strings.ToUpper(x.Hdr.Name)
		case *dns.CNAME:
			x.Target = "NiC.TeSt."
		case *dns.SOA:
			x.Ns, x.Mbox = strings.ToUpper(x.Ns), "HostMaster.nic.test."
		}
		mixed = append(mixed, rr)
	}
	signed, err := zonesign.Sign(context.Background(), mixed, "test.", []*zonesign.Key{ksk, zsk}, zonesign.Options{Inception: sigInception, Expiration: sigExpiration})
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(mustZone(t, signed))
	if n := checkWireHashes(t, ix); n < ix.sigs-2 {
		t.Fatalf("compared %d of %d signatures", n, ix.sigs)
	}
	rep := Run(context.Background(), []Gate{dnssecGate{DefaultConfig()}}, &Input{Zone: ix.Zone(), Now: sigInception.Add(time.Hour)})
	if !rep.Pass {
		t.Fatalf("mixed-case zone: %v", rep.Results)
	}
}
