package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/keys/identity"
)

// TestKeysIdentity: the printed block is the config's identity: section,
// it matches the private files, the files are 0600, and a second run never
// overwrites them.
func TestKeysIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "id")
	r := run(t, "keys", "identity", "--site", "osaka", "--dir", dir)
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	var block struct {
		Identity config.SiteIdentity `yaml:"identity"`
	}
	if err := yaml.Unmarshal([]byte(r.Stdout), &block); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, r.Stdout)
	}
	si := block.Identity
	f := identity.DefaultFiles(dir)
	if si.AgeIdentityFile != f.AgeIdentity || si.SigningKeyFile != f.SigningKey {
		t.Fatalf("file names: %+v", si)
	}
	for _, p := range []string{f.AgeIdentity, f.SigningKey} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, st, err)
		}
	}
	id, err := identity.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if si.AgeRecipient != id.Public().Age.String() || si.SigningPublicKey != identity.SigningString(id.Public().Signing) {
		t.Fatal("printed public halves do not match the private files")
	}
	secret, _ := os.ReadFile(f.AgeIdentity)
	seed, _ := os.ReadFile(f.SigningKey)
	if strings.Contains(r.Stdout+r.Stderr, strings.TrimSpace(string(secret))) || strings.Contains(r.Stdout+r.Stderr, strings.TrimSpace(string(seed))) {
		t.Fatal("private identity printed")
	}
	before, _ := os.ReadFile(f.SigningKey)
	if r := run(t, "keys", "identity", "--site", "osaka", "--dir", dir); r.Code == 0 {
		t.Fatal("second identity over existing files succeeded")
	}
	if after, _ := os.ReadFile(f.SigningKey); string(after) != string(before) {
		t.Fatal("existing signing key overwritten")
	}
	if r := run(t, "keys", "identity", "--dir", dir); r.Code != 2 {
		t.Fatalf("missing --site: exit %d, want 2", r.Code)
	}
}
