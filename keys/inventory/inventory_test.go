package inventory_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys/inventory"
)

func TestDirList(t *testing.T) {
	dir := t.TempDir()
	ksk, err := zonesign.GenerateKey(dir, "test.", dns.ECDSAP256SHA256, true)
	if err != nil {
		t.Fatal(err)
	}
	zsk, err := zonesign.GenerateKey(dir, "test.", dns.ED25519, false)
	if err != nil {
		t.Fatal(err)
	}
	// Noise the inventory must ignore: another zone's key, a temp file,
	// a .key whose .private is still being written.
	if _, err := zonesign.GenerateKey(dir, "other.", 0, false); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ".Ktest.+013+00001.key.tmp-1"), []byte("x"), 0o600)
	half, _ := os.ReadFile(zsk.File)
	os.WriteFile(filepath.Join(dir, "Ktest.+015+00002.key"), half, 0o644)

	ks, err := inventory.Dir{Path: dir}.List(context.Background(), "TEST")
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 2 {
		t.Fatalf("listed %d keys: %+v", len(ks), ks)
	}
	for i, want := range []*zonesign.Key{ksk, zsk} {
		k := ks[i]
		if k.Tag != want.Tag || k.Algorithm != want.DNSKEY.Algorithm || k.KSK != want.KSK || k.State != inventory.StateOK {
			t.Errorf("key %d: %+v, want %s", i, k, want)
		}
		if k.Digest != inventory.Digest(want.DNSKEY) || len(k.Digest) != 64 {
			t.Errorf("key %d digest %s", i, k.Digest)
		}
		if _, ok := k.Timing["Created"]; !ok {
			t.Errorf("key %d: no Created timing from the .key comment: %v", i, k.Timing)
		}
	}
}

func TestDescribeMismatch(t *testing.T) {
	dir := t.TempDir()
	a, _ := zonesign.GenerateKey(dir, "test.", 0, false)
	b, _ := zonesign.GenerateKey(dir, "test.", 0, false)
	pub, _ := os.ReadFile(a.File)
	privB, _ := os.ReadFile(strings.TrimSuffix(b.File, ".key") + ".private")
	name := strings.TrimSuffix(filepath.Base(a.File), ".key")
	for _, tc := range []struct {
		name  string
		priv  []byte
		state string
	}{
		{"own private key", mustRead(t, strings.TrimSuffix(a.File, ".key")+".private"), inventory.StateOK},
		{"another key's private key", privB, inventory.StateMismatch},
		{"garbage", mustRead(t, "testdata/garbage.private"), inventory.StateMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := inventory.Describe(name, pub, tc.priv)
			if err != nil {
				t.Fatal(err)
			}
			if k.State != tc.state {
				t.Fatalf("state %s (%s), want %s", k.State, k.Problem, tc.state)
			}
			if strings.Contains(k.Problem, "!!!") {
				t.Fatal("problem quotes the private file")
			}
		})
	}
	if _, err := inventory.Describe("Ktest.+013+00001", pub, privB); err == nil {
		t.Fatal("a file name that is not the key's own was accepted")
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTimingFromBINDMetadata(t *testing.T) {
	pub := []byte("; This is a zone-signing key, keyid 1, for test.\n; Created: 20260101000000 (Thu Jan  1 00:00:00 2026)\n; Publish: 20260102000000 (Fri Jan  2 00:00:00 2026)\n; Activate: 20260103000000 (Sat Jan  3 00:00:00 2026)\n")
	dir := t.TempDir()
	k, _ := zonesign.GenerateKey(dir, "test.", 0, false)
	body, _ := os.ReadFile(k.File)
	lines := strings.Split(string(body), "\n")
	pub = append(pub, []byte(lines[len(lines)-2]+"\n")...)
	priv := mustRead(t, strings.TrimSuffix(k.File, ".key")+".private")
	priv = append(priv, []byte("Inactive: 20270101000000\n")...)
	d, err := inventory.Describe(strings.TrimSuffix(filepath.Base(k.File), ".key"), pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Created", "Publish", "Activate", "Inactive"} {
		if d.Timing[f].IsZero() {
			t.Errorf("no %s in %v", f, d.Timing)
		}
	}
	if d.Timing["Activate"].Format("20060102") != "20260103" {
		t.Errorf("Activate = %s", d.Timing["Activate"])
	}
}
