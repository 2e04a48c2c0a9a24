package zonesign

import (
	"bytes"
	"crypto"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestGenerateAndLoadKeysRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		alg  uint8
		want uint8
		ksk  bool
	}{
		{"default is ECDSAP256SHA256 KSK", 0, dns.ECDSAP256SHA256, true},
		{"ECDSAP256SHA256 ZSK", dns.ECDSAP256SHA256, dns.ECDSAP256SHA256, false},
		{"ED25519 ZSK", dns.ED25519, dns.ED25519, false},
		{"RSASHA256 KSK", dns.RSASHA256, dns.RSASHA256, true},
	}
	dir := t.TempDir()
	made := map[uint16]*Key{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := GenerateKey(dir, "Test.", tc.alg, tc.ksk)
			if err != nil {
				t.Fatal(err)
			}
			wantFlags := uint16(256)
			if tc.ksk {
				wantFlags = 257
			}
			if k.DNSKEY.Flags != wantFlags || k.DNSKEY.Algorithm != tc.want || k.KSK != tc.ksk {
				t.Fatalf("flags %d alg %d ksk %v, want %d %d %v", k.DNSKEY.Flags, k.DNSKEY.Algorithm, k.KSK, wantFlags, tc.want, tc.ksk)
			}
			base := fmt.Sprintf("Ktest.+%03d+%05d", tc.want, k.Tag)
			if filepath.Base(k.File) != base+".key" {
				t.Fatalf("key file %s, want %s.key", k.File, base)
			}
			for file, mode := range map[string]os.FileMode{base + ".key": 0o644, base + ".private": 0o600} {
				st, err := os.Stat(filepath.Join(dir, file))
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != mode {
					t.Errorf("%s mode %04o, want %04o", file, st.Mode().Perm(), mode)
				}
			}
			made[k.Tag] = k
		})
	}
	// A key for another zone in the same directory is not ours.
	if _, err := GenerateKey(dir, "example.", 0, false); err != nil {
		t.Fatal(err)
	}

	loaded, err := LoadKeys(dir, "test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != len(made) {
		t.Fatalf("loaded %d keys, generated %d", len(loaded), len(made))
	}
	for i, l := range loaded {
		if i > 0 && !loaded[i-1].KSK && l.KSK {
			t.Errorf("KSKs must come first: %v after %v", l, loaded[i-1])
		}
		g := made[l.Tag]
		if g == nil {
			t.Fatalf("loaded unknown key %v", l)
		}
		if g.DNSKEY.String() != l.DNSKEY.String() || g.KSK != l.KSK || g.File != l.File {
			t.Errorf("loaded %v (%s), generated %v (%s)", l, l.DNSKEY, g, g.DNSKEY)
		}
		type equaler interface{ Equal(crypto.PublicKey) bool }
		if !g.Signer.Public().(equaler).Equal(l.Signer.Public()) {
			t.Errorf("key %d: loaded private key differs from the generated one", l.Tag)
		}
	}
}

func TestLoadKeysRefuses(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string, a, b *Key)
		want   string
	}{
		{"private readable by group", func(t *testing.T, dir string, a, _ *Key) {
			os.Chmod(privateOf(a), 0o640)
		}, "group/other"},
		{"private readable by others", func(t *testing.T, dir string, a, _ *Key) {
			os.Chmod(privateOf(a), 0o604)
		}, "group/other"},
		{"private missing", func(t *testing.T, dir string, a, _ *Key) {
			os.Remove(privateOf(a))
		}, ".private"},
		{"private of another key", func(t *testing.T, dir string, a, b *Key) {
			data, err := os.ReadFile(privateOf(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(privateOf(a), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "does not match"},
		{"garbage key file", func(t *testing.T, dir string, a, _ *Key) {
			os.WriteFile(a.File, []byte("test. IN DNSKEY nonsense\n"), 0o644)
		}, ".key"},
		{"DNSKEY for another zone", func(t *testing.T, dir string, a, _ *Key) {
			data, _ := os.ReadFile(a.File)
			os.WriteFile(a.File, bytes.ReplaceAll(data, []byte("\ntest."), []byte("\nexample.")), 0o644)
		}, "is not test."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := GenerateKey(dir, "test.", 0, true)
			if err != nil {
				t.Fatal(err)
			}
			b, err := GenerateKey(dir, "test.", 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := LoadKeys(dir, "test."); err != nil {
				t.Fatalf("intact keys must load: %v", err)
			}
			tc.break_(t, dir, a, b)
			_, err = LoadKeys(dir, "test.")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			// The error names the file at fault.
			if !strings.Contains(err.Error(), strings.TrimSuffix(filepath.Base(a.File), ".key")) {
				t.Errorf("error %q does not name the key file", err)
			}
		})
	}
}

func privateOf(k *Key) string { return strings.TrimSuffix(k.File, ".key") + ".private" }

func TestKeyNeverPrintsPrivateMaterial(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []uint8{dns.ECDSAP256SHA256, dns.ED25519} {
		k, err := GenerateKey(dir, "test.", alg, false)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(privateOf(k))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`PrivateKey: (\S+)`).FindSubmatch(data)
		if m == nil {
			t.Fatalf("no PrivateKey line in %s", privateOf(k))
		}
		secret := string(m[1])

		var logged bytes.Buffer
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("key", "key", k)
		slog.New(slog.NewTextHandler(&logged, nil)).Info("key", "key", k)
		outputs := []string{
			fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k),
			fmt.Sprintf("%v", []*Key{k}), logged.String(),
		}
		for _, out := range outputs {
			if strings.Contains(out, secret) {
				t.Fatalf("private key material in output %q", out)
			}
		}
		if !strings.Contains(logged.String(), fmt.Sprint(k.Tag)) {
			t.Errorf("log line %q does not name the key tag", logged.String())
		}
	}
}
