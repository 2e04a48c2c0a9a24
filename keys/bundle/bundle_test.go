package bundle_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys/bundle"
	"github.com/regdr/regdr/keys/identity"
	"github.com/regdr/regdr/keys/inventory"
)

type site struct {
	name string
	id   *identity.Private
}

func newSite(t testing.TB, name string) site {
	t.Helper()
	id, err := identity.Generate(identity.DefaultFiles(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return site{name, id}
}

// pairs generates a KSK and a ZSK for test. in a fresh directory.
func pairs(t testing.TB) (string, []inventory.Pair) {
	t.Helper()
	dir := t.TempDir()
	for _, ksk := range []bool{true, false} {
		if _, err := zonesign.GenerateKey(dir, "test.", dns.ECDSAP256SHA256, ksk); err != nil {
			t.Fatal(err)
		}
	}
	b := inventory.Dir{Path: dir}
	ks, err := b.List(context.Background(), "test.")
	if err != nil || len(ks) != 2 {
		t.Fatalf("list: %v %v", ks, err)
	}
	var out []inventory.Pair
	for _, k := range ks {
		p, err := b.Read(context.Background(), k.Name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return dir, out
}

func signersOf(sites ...site) bundle.Signers {
	return func(name string) (ed25519.PublicKey, bool) {
		for _, s := range sites {
			if s.name == name {
				return s.id.Public().Signing, true
			}
		}
		return nil, false
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	tokyo, osaka := newSite(t, "tokyo"), newSite(t, "osaka")
	_, ps := pairs(t)
	env, h, err := bundle.Seal(bundle.Header{From: "tokyo", To: "osaka", Seq: 1, Time: time.Now()}, ps, osaka.id.Age.Recipient(), tokyo.id.Signing, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Keys) != 2 || h.CiphertextSHA256 == "" {
		t.Fatalf("header %+v", h)
	}
	for _, p := range ps {
		if bytes.Contains(env, p.Private) {
			t.Fatal("envelope holds a private key file in the clear")
		}
	}
	got, opened, err := bundle.Open(env, 0, "osaka", signersOf(tokyo, osaka), 0, osaka.id.Age)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 1 || len(opened) != 2 {
		t.Fatalf("opened %+v, %d pairs", got, len(opened))
	}
	for i := range ps {
		if !bytes.Equal(opened[i].Private, ps[i].Private) || opened[i].Key.Digest != ps[i].Key.Digest {
			t.Fatalf("pair %d changed in transit", i)
		}
	}
}

// TestRefusals: every way a bundle can be wrong is refused with its own
// error, before anything is installed.
func TestRefusals(t *testing.T) {
	tokyo, osaka, mallory := newSite(t, "tokyo"), newSite(t, "osaka"), newSite(t, "tokyo")
	kyoto := newSite(t, "kyoto")
	_, ps := pairs(t)
	seal := func(from site, to string, rcpt age.Recipient, seq uint64) []byte {
		env, _, err := bundle.Seal(bundle.Header{From: from.name, To: to, Seq: seq, Time: time.Now()}, ps, rcpt, from.id.Signing, 0)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	good := seal(tokyo, "osaka", osaka.id.Age.Recipient(), 5)
	flipped := flipCiphertext(t, good)
	for _, tc := range []struct {
		name    string
		env     []byte
		lastSeq uint64
		want    error
	}{
		{"flipped ciphertext byte", flipped, 0, bundle.ErrCiphertext},
		{"signed by a key not in the config", seal(mallory, "osaka", osaka.id.Age.Recipient(), 6), 0, bundle.ErrBadSignature},
		{"sender not in the config", seal(kyoto, "osaka", osaka.id.Age.Recipient(), 6), 0, bundle.ErrUnknownSigner},
		{"replayed", good, 5, bundle.ErrReplay},
		{"older", good, 9, bundle.ErrReplay},
		{"addressed to another site", seal(tokyo, "nagoya", osaka.id.Age.Recipient(), 6), 0, bundle.ErrWrongRecipient},
		{"encrypted to another site", seal(tokyo, "osaka", tokyo.id.Age.Recipient(), 6), 0, bundle.ErrDecrypt},
		{"too large", append(bytes.Repeat([]byte(" "), bundle.DefaultMaxBytes), good...), 0, bundle.ErrTooLarge},
		{"not json", []byte("hello"), 0, bundle.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := bundle.Open(tc.env, 0, "osaka", signersOf(tokyo, osaka), tc.lastSeq, osaka.id.Age)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got != nil {
				t.Fatalf("refused bundle returned %d pairs", len(got))
			}
		})
	}
}

func flipCiphertext(t testing.TB, env []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	var e struct{ Ciphertext []byte }
	json.Unmarshal(env, &e)
	e.Ciphertext[len(e.Ciphertext)/2] ^= 0x01
	m["ciphertext"] = e.Ciphertext
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInstallRefusesDifferentKeyWithSameName(t *testing.T) {
	_, ps := pairs(t)
	dir := t.TempDir()
	// Another key's files under the first pair's name: the tag collides.
	_, other := pairs(t)
	if err := os.WriteFile(filepath.Join(dir, ps[1].Key.Name+".private"), other[1].Private, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bundle.Install(dir, ps, nil)
	if !errors.Is(err, bundle.ErrTagConflict) {
		t.Fatalf("err = %v, want ErrTagConflict", err)
	}
	// Validation comes first: the first pair, which did not conflict, was
	// not installed either.
	if _, err := os.Stat(filepath.Join(dir, ps[0].Key.Name+".key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("first pair installed despite the conflict: %v", err)
	}
	if bytes.Contains([]byte(err.Error()), other[1].Private[len(other[1].Private)/2:]) {
		t.Fatal("error quotes key material")
	}
}

func TestInstallIsIdempotentAndPrivate(t *testing.T) {
	_, ps := pairs(t)
	dir := t.TempDir()
	res, err := bundle.Install(dir, ps, nil)
	if err != nil || len(res.Installed) != 2 {
		t.Fatalf("install: %+v %v", res, err)
	}
	res, err = bundle.Install(dir, ps, nil)
	if err != nil || len(res.Installed) != 0 || len(res.Present) != 2 {
		t.Fatalf("second install: %+v %v", res, err)
	}
	for _, p := range ps {
		st, err := os.Stat(filepath.Join(dir, p.Key.Name+".private"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("private file: %v %v", st, err)
		}
	}
	keys, err := zonesign.LoadKeys(dir, "test.")
	if err != nil || len(keys) != 2 {
		t.Fatalf("installed keys do not load: %v %v", keys, err)
	}
}
