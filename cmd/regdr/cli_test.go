package main

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/regdr/regdr/internal/labtest"
)

// testSecret is the TSIG secret written next to test configs (base64 of
// testSecretPlain). Neither form may ever appear in regdr's output.
const (
	testSecret      = "cmVnZHItY2xpLXRlc3Qtc2VjcmV0LW5ldmVyLXByaW50ZWQ="
	testSecretPlain = "regdr-cli-test-secret-never-printed"
)

// hint is what main prints after every usage error.
const hint = "Run 'regdr --help' (or 'regdr COMMAND --help') for usage."

// run runs the regdr binary with args. The environment variables regdr
// reads are emptied so the operator's shell cannot change a test's outcome.
func run(t *testing.T, args ...string) labtest.Result {
	t.Helper()
	return runEnv(t, nil, args...)
}

// runEnv is run with env (NAME=value) set on top; later values win.
func runEnv(t *testing.T, env []string, args ...string) labtest.Result {
	t.Helper()
	pinned := []string{"REGDR_CONFIG=", "REGDR_LAB_DIR=", "REGDR_SITE="}
	return labtest.Run(t, append(pinned, env...), args...)
}

// deployment fills the placeholders of testdata/deployment.yaml.
type deployment struct {
	etcd                  string // etcd endpoint URL
	tokyo, osaka, witness string // agent_addr of each site
	secretMode            fs.FileMode
}

var placeholderRE = regexp.MustCompile(`@[A-Z_]+@`)

// writeConfig writes testdata/deployment.yaml, filled from d, into a fresh
// directory with its TSIG secret file (mode d.secretMode) beside it, and
// returns the config's path.
func writeConfig(t *testing.T, d deployment) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"@ETCD@", d.etcd,
		"@TOKYO_AGENT@", d.tokyo,
		"@OSAKA_AGENT@", d.osaka,
		"@WITNESS_AGENT@", d.witness,
	).Replace(string(raw))
	if placeholderRE.MatchString(text) {
		t.Fatalf("deployment.yaml: placeholder left unfilled by %+v", d)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "regdr.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secrets", "xfr.tsig")
	if err := os.MkdirAll(filepath.Dir(secret), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte(testSecret+"\n"), d.secretMode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask.
	if err := os.Chmod(secret, d.secretMode); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedAddr returns a loopback host:port that was free a moment ago, so
// nothing answers there.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("release port %s: %v", addr, err)
	}
	return addr
}

// assertNoSecret fails if the test secret shows in any of outs.
func assertNoSecret(t *testing.T, outs ...string) {
	t.Helper()
	for _, o := range outs {
		if strings.Contains(o, testSecret) || strings.Contains(o, testSecretPlain) {
			t.Errorf("output reveals the TSIG secret:\n%s", o)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	lab := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string // on stderr, after "regdr: "
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate" for "regdr"`},
		{"argument to a command taking none", []string{"status", "extra"}, `unknown command "extra" for "regdr status"`},
		{"unknown flag", []string{"status", "--frobnicate"}, "unknown flag: --frobnicate"},
		{"unknown shorthand", []string{"config", "check", "-z"}, "unknown shorthand flag: 'z' in -z"},
		{"flag without value", []string{"status", "--timeout"}, "flag needs an argument: --timeout"},
		{"bad flag value", []string{"status", "--timeout", "soon"}, `invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"`},
		{"output yaml", []string{"status", "-o", "yaml"}, `--output "yaml": want table or json`},
		{"output yaml on config check", []string{"config", "check", "--output=yaml", "x.yaml"}, `--output "yaml": want table or json`},
		{"lab load without journal", []string{"lab", "load", "--dir", lab}, "--journal FILE is required"},
		{"lab load at rate 0", []string{"lab", "load", "--dir", lab, "--journal", "j", "--rate", "0"}, "--rate must be above 0"},
		{"agent without site", []string{"agent"}, "--site is required (or REGDR_SITE)"},
		{"config check with two files", []string{"config", "check", "a.yaml", "b.yaml"}, "accepts at most 1 arg(s), received 2"},
		{"unknown subcommand of config", []string{"config", "chekc", "x.yaml"}, `unknown command "chekc" for "regdr config"`},
		{"unknown subcommand of lab", []string{"lab", "frob"}, `unknown command "frob" for "regdr lab"`},
		{"unknown subcommand of audit", []string{"audit", "frob"}, `unknown command "frob" for "regdr audit"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.args...)
			if r.Code != exitUsage {
				t.Errorf("regdr %s: exit %d, want %d (usage)\nstderr: %s", strings.Join(tc.args, " "), r.Code, exitUsage, r.Stderr)
			}
			if !strings.Contains(r.Stderr, "regdr: "+tc.want+"\n") {
				t.Errorf("stderr lacks %q:\n%s", "regdr: "+tc.want, r.Stderr)
			}
			if !strings.Contains(r.Stderr, hint) {
				t.Errorf("stderr lacks the usage hint:\n%s", r.Stderr)
			}
			if r.Stdout != "" {
				t.Errorf("a usage error printed to stdout:\n%s", r.Stdout)
			}
		})
	}
}

// TestLabWithoutLab: lab commands pointed at a directory holding no lab
// fail (exit 1, not a usage error) and tell the operator what to run.
func TestLabWithoutLab(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	journal := filepath.Join(t.TempDir(), "load.jsonl")
	tests := []struct {
		name string
		args []string
	}{
		{"status", []string{"lab", "status", "--dir", dir}},
		{"status json", []string{"lab", "status", "--dir", dir, "-o", "json"}},
		{"down", []string{"lab", "down", "--dir", dir}},
		{"down json", []string{"lab", "down", "--dir", dir, "-o", "json"}},
		{"load", []string{"lab", "load", "--dir", dir, "--journal", journal, "--duration", "1s"}},
		{"load json", []string{"lab", "load", "--dir", dir, "--journal", journal, "-o", "json"}},
	}
	// The group returns only when its parallel subtests are done, so the
	// directory is checked after every command ran.
	t.Run("commands", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := run(t, tc.args...)
				if r.Code != exitFailed {
					t.Errorf("exit %d, want %d\nstderr: %s", r.Code, exitFailed, r.Stderr)
				}
				want := "regdr lab up --dir " + dir
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("stderr does not tell the operator to run %q:\n%s", want, r.Stderr)
				}
				if strings.Contains(r.Stderr, hint) {
					t.Errorf("a missing lab is reported as a usage error:\n%s", r.Stderr)
				}
				if r.Stdout != "" {
					t.Errorf("stdout not empty:\n%s", r.Stdout)
				}
			})
		}
	})
	// Nothing may have been created in the directory by looking at it.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("lab command without a lab created %s", filepath.Join(dir, e.Name()))
	}
	if _, err := os.Stat(journal); err == nil {
		t.Errorf("lab load without a lab created the journal %s", journal)
	}
}
