package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretB64 is a TSIG secret for tests; it must never show in a problem.
const secretB64 = "c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw=="

type fileSpec struct {
	content string
	mode    fs.FileMode
	dir     bool // create a directory instead of a file
}

// goodFiles are the files load.yaml names, all fine. Keys are relative to
// the config's directory; "@ABS@/" names the other directory.
func goodFiles() map[string]fileSpec {
	return map[string]fileSpec{
		"tls/ca.pem":         {content: "ca", mode: 0o644},
		"tls/client.pem":     {content: "cert", mode: 0o644},
		"tls/client-key.pem": {content: "key", mode: 0o600},
		"secrets/xfr.tsig":   {content: "\n  " + secretB64 + " \n", mode: 0o600},
		"@ABS@/etcd.pw":      {content: "pw", mode: 0o400},
	}
}

// writeLoadFixture writes load.yaml and files into fresh directories and
// returns the config's path, the other directory, and the fixture text.
func writeLoadFixture(t *testing.T, files map[string]fileSpec) (cfgPath, abs string, text string) {
	t.Helper()
	dir, abs := t.TempDir(), t.TempDir()
	raw, err := os.ReadFile("testdata/load.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(string(raw), "@ABS@", abs)
	cfgPath = filepath.Join(dir, "deployment.yaml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, f := range files {
		p := filepath.Join(dir, name)
		if rest, ok := strings.CutPrefix(name, "@ABS@/"); ok {
			p = filepath.Join(abs, rest)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if f.dir {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode is filtered by the umask.
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return cfgPath, abs, text
}

// lineOf is the 1-based line of text's first line containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("fixture has no line with %q", s)
	return 0
}

func TestLoadFiles(t *testing.T) {
	type want struct {
		path, msg string // msg may hold {dir} and {abs}
		line      string // text identifying the line
	}
	tests := []struct {
		name   string
		change func(map[string]fileSpec)
		want   []want
	}{
		{"all files fine", func(map[string]fileSpec) {}, nil},
		{"secret missing", func(f map[string]fileSpec) { delete(f, "secrets/xfr.tsig") },
			[]want{{"tsig_keys[0].secret_file", `unreadable file "{dir}/secrets/xfr.tsig": no such file or directory`, "secret_file:"}}},
		{"secret readable by group", func(f map[string]fileSpec) { f["secrets/xfr.tsig"] = fileSpec{content: secretB64, mode: 0o640} },
			[]want{{"tsig_keys[0].secret_file", `secret file "{dir}/secrets/xfr.tsig" has mode 0640: group and others must have no access (chmod 0600)`, "secret_file:"}}},
		{"secret not base64", func(f map[string]fileSpec) { f["secrets/xfr.tsig"] = fileSpec{content: "not base64!", mode: 0o600} },
			[]want{{"tsig_keys[0].secret_file", `secret file {dir}/secrets/xfr.tsig is not base64: illegal base64 data at input byte 3`, "secret_file:"}}},
		{"secret empty", func(f map[string]fileSpec) { f["secrets/xfr.tsig"] = fileSpec{content: " \n", mode: 0o600} },
			[]want{{"tsig_keys[0].secret_file", `secret file {dir}/secrets/xfr.tsig is empty`, "secret_file:"}}},
		{"ca is a directory", func(f map[string]fileSpec) { f["tls/ca.pem"] = fileSpec{dir: true} },
			[]want{{"etcd.tls.ca_file", `unreadable file "{dir}/tls/ca.pem": is a directory`, "ca_file:"}}},
		{"absolute password file missing, key world readable: both reported", func(f map[string]fileSpec) {
			delete(f, "@ABS@/etcd.pw")
			f["tls/client-key.pem"] = fileSpec{content: "key", mode: 0o604}
		}, []want{
			{"etcd.tls.key_file", `secret file "{dir}/tls/client-key.pem" has mode 0604: group and others must have no access (chmod 0600)`, "key_file:"},
			{"etcd.password_file", `unreadable file "{abs}/etcd.pw": no such file or directory`, "password_file:"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := goodFiles()
			tt.change(files)
			cfgPath, abs, text := writeLoadFixture(t, files)
			dir := filepath.Dir(cfgPath)
			c, err := Load(cfgPath)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				checkLoaded(t, c, cfgPath)
				return
			}
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load error = %v, want Problems", err)
			}
			if c != nil {
				t.Error("Load returned a config with its problems")
			}
			if len(probs) != len(tt.want) {
				t.Fatalf("problems:\n%v\nwant %d", probs, len(tt.want))
			}
			for i, w := range tt.want {
				p := probs[i]
				msg := strings.NewReplacer("{dir}", dir, "{abs}", abs).Replace(w.msg)
				line := lineOf(t, text, w.line)
				if p.Path != w.path || p.Msg != msg || p.Line != line || p.File != cfgPath {
					t.Errorf("problem %d = %#v\nwant path %s line %d msg %s", i, p, w.path, line, msg)
				}
				if strings.Contains(p.Error(), secretB64) {
					t.Errorf("problem shows the secret: %v", p)
				}
			}
		})
	}
}

func checkLoaded(t *testing.T, c *Config, cfgPath string) {
	t.Helper()
	if !filepath.IsAbs(c.Path()) || c.Path() != cfgPath {
		t.Errorf("Path() = %q, want %q", c.Path(), cfgPath)
	}
	dir := filepath.Dir(cfgPath)
	for in, want := range map[string]string{
		"secrets/xfr.tsig": filepath.Join(dir, "secrets/xfr.tsig"),
		"/etc/regdr/x":     "/etc/regdr/x",
		"":                 "",
	} {
		if got := c.Resolve(in); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", in, got, want)
		}
	}
	// Key names are domain names: case and the final dot do not matter.
	alg, secret, err := c.TSIG("XFR.")
	if err != nil || alg != "hmac-sha384" || secret != secretB64 {
		t.Errorf("TSIG(XFR.) = %q, %q, %v; want hmac-sha384 and the trimmed secret", alg, secret, err)
	}
	if _, _, err := c.TSIG("nope"); !errors.Is(err, ErrUnknownTSIGKey) {
		t.Errorf("TSIG(nope) error = %v, want ErrUnknownTSIGKey", err)
	}
	s, ok := c.Site("osaka")
	if !ok || s.AgentAddr != "127.0.0.2:8008" {
		t.Errorf("Site(osaka) = %+v, %v", s, ok)
	}
	s.ZoneDir = "moved"
	if c.Sites[1].ZoneDir != "moved" {
		t.Error("Site does not point into Sites")
	}
	if _, ok := c.Site("kyoto"); ok {
		t.Error("Site(kyoto) found")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "absent.yaml"))
	var probs Problems
	if !errors.Is(err, fs.ErrNotExist) || errors.As(err, &probs) {
		t.Errorf("Load(absent) = %v, want a wrapped not-exist error", err)
	}

	// Parse problems and file problems come back together, in file order.
	p := filepath.Join(dir, "d.yaml")
	raw, err := os.ReadFile("testdata/load.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(raw), "gossip_addr: 127.0.0.2:7946", "gossip_addr: osaka", 1)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if c != nil || !errors.As(err, &probs) {
		t.Fatalf("Load = %v, %v; want nil and Problems", c, err)
	}
	var paths []string
	for _, pr := range probs {
		paths = append(paths, pr.Path)
	}
	want := []string{"etcd.tls.ca_file", "etcd.tls.cert_file", "etcd.tls.key_file", "etcd.password_file",
		"sites[1].gossip_addr", "tsig_keys[0].secret_file"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("problem paths = %v, want %v\n%v", paths, want, probs)
	}
}

func TestTSIGNotLoaded(t *testing.T) {
	// A Config built in Go resolves relative names against the working
	// directory, and reports an unreadable secret with the key's name.
	c := &Config{TSIGKeys: []TSIGKey{{Name: "k", Algorithm: "hmac-sha256", SecretFile: "testdata/absent.tsig"}}}
	if _, _, err := c.TSIG("k"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `tsig key "k"`) {
		t.Errorf("TSIG = %v, want a not-exist error naming the key", err)
	}
}
