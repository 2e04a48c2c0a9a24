package identity_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regdr/regdr/keys/identity"
)

func TestGenerateLoad(t *testing.T) {
	f := identity.DefaultFiles(filepath.Join(t.TempDir(), "id"))
	id, err := identity.Generate(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.AgeIdentity, f.SigningKey} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, st, err)
		}
	}
	got, err := identity.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if got.Age.String() != id.Age.String() || !got.Signing.Equal(id.Signing) {
		t.Fatal("loaded identity differs")
	}
	if _, err := identity.Generate(f); err == nil {
		t.Fatal("Generate overwrote an existing identity")
	}
	if s := id.String(); strings.Contains(s, "AGE-SECRET-KEY") {
		t.Fatalf("String shows the private identity: %s", s)
	}
	pub, err := identity.ParsePublic(id.Public().Age.String(), identity.SigningString(id.Public().Signing))
	if err != nil || !pub.Signing.Equal(id.Public().Signing) {
		t.Fatalf("public round trip: %v", err)
	}

	os.Chmod(f.SigningKey, 0o640)
	if _, err := identity.Load(f); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable signing key loaded: %v", err)
	}
}

func TestParseSigning(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"ed25519:QW4TeLMyKARFaFtWljA6/QGZNvudhkKBVfWiJn3FpNA=", true},
		{"QW4TeLMyKARFaFtWljA6/QGZNvudhkKBVfWiJn3FpNA=", false},
		{"ed25519:QW4T", false},
		{"ed25519:!!!", false},
		{"", false},
	} {
		_, err := identity.ParseSigning(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseSigning(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
