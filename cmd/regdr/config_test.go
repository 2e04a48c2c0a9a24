package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// invalidFixtures are internal/config's bad configs, one per class of
// problem; this test only reads them.
const invalidFixtures = "../../internal/config/testdata/invalid/*.yaml"

// checkJSON is `regdr config check -o json`.
type checkJSON struct {
	File     string          `json:"file"`
	Valid    bool            `json:"valid"`
	Problems []checkProblem  `json:"problems"`
	Raw      json.RawMessage `json:"-"`
}

type checkProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

// line is the problem as the table output must print it:
// file:line:col: path: message (file:line: message for YAML syntax
// errors, which have neither column nor path).
func (p checkProblem) line() string {
	var b strings.Builder
	if p.Column > 0 {
		fmt.Fprintf(&b, "%s:%d:%d: ", p.File, p.Line, p.Column)
	} else {
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

func decodeCheck(t *testing.T, stdout string) checkJSON {
	t.Helper()
	var c checkJSON
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("config check -o json: %v\n%s", err, stdout)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatal(err)
	}
	c.Raw = raw["problems"]
	return c
}

// want is one `# want "path: message"` expectation of a fixture.
type want struct {
	line int
	text string
}

var wantRE = regexp.MustCompile(`#\s*want\s+(".*)$`)

// readWants reads the expectations internal/config's fixtures carry: each
// quoted string after `# want` is "path: message" (or a bare message for a
// problem with no field) reported at that line.
func readWants(t *testing.T, file string) []want {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ws []want
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		m := wantRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		rest := strings.TrimSpace(m[1])
		for rest != "" {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("%s:%d: bad want %q: %v", file, n, rest, err)
			}
			s, _ := strconv.Unquote(q)
			ws = append(ws, want{n, s})
			rest = strings.TrimSpace(rest[len(q):])
		}
	}
	if len(ws) == 0 {
		t.Fatalf("%s has no want comments", file)
	}
	return ws
}

// matches reports whether p is the problem w expects.
func (w want) matches(p checkProblem) bool {
	if p.Line != w.line {
		return false
	}
	if p.Path == "" {
		return p.Message == w.text
	}
	return p.Path+": "+p.Message == w.text
}

// TestConfigCheckInvalid runs `config check` on every invalid fixture, as a
// table and as JSON. Both must report every problem the fixture's want
// comments name, at their lines, and the table must print exactly the JSON
// problems, one per line. The fixtures' secret files do not exist, so
// file problems appear too; they must be just as well placed.
func TestConfigCheckInvalid(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(invalidFixtures)
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures match %s: %v", invalidFixtures, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			wants := readWants(t, file)

			rj := run(t, "config", "check", "-o", "json", file)
			if rj.Code != exitFailed {
				t.Errorf("-o json: exit %d, want %d\nstderr: %s", rj.Code, exitFailed, rj.Stderr)
			}
			c := decodeCheck(t, rj.Stdout)
			if c.Valid || c.File != file || len(c.Problems) == 0 {
				t.Fatalf("-o json: valid=%v file=%q %d problems; want valid=false file=%q and problems",
					c.Valid, c.File, len(c.Problems), file)
			}
			for _, p := range c.Problems {
				if p.File != file || p.Line < 1 || p.Message == "" {
					t.Errorf("problem without file, line or message: %+v", p)
				}
				if p.Path != "" && p.Column < 1 {
					t.Errorf("field problem without column: %+v", p)
				}
				if p.Path == "" {
					// Only a problem the fixture itself expects without a
					// field (YAML syntax) may lack a path.
					expected := false
					for _, w := range wants {
						expected = expected || w.matches(p)
					}
					if !expected {
						t.Errorf("problem names no field path: %+v", p)
					}
				}
			}
			for _, w := range wants {
				found := false
				for _, p := range c.Problems {
					found = found || w.matches(p)
				}
				if !found {
					t.Errorf("-o json lacks the problem at line %d: %s", w.line, w.text)
				}
			}

			rt := run(t, "config", "check", file)
			if rt.Code != exitFailed {
				t.Errorf("table: exit %d, want %d\nstderr: %s", rt.Code, exitFailed, rt.Stderr)
			}
			lines := strings.Split(strings.TrimSuffix(rt.Stdout, "\n"), "\n")
			if len(lines) != len(c.Problems) {
				t.Fatalf("table has %d lines, JSON %d problems:\n%s", len(lines), len(c.Problems), rt.Stdout)
			}
			for i, p := range c.Problems {
				if lines[i] != p.line() {
					t.Errorf("table line %d:\n  got:  %s\n  want: %s", i+1, lines[i], p.line())
				}
				if p.Path != "" && !strings.Contains(lines[i], ": "+p.Path+": ") {
					t.Errorf("table line %d does not name the field %s: %s", i+1, p.Path, lines[i])
				}
			}
			summary := fmt.Sprintf("regdr: %s: %d problem(s)\n", file, len(c.Problems))
			if !strings.Contains(rt.Stderr, summary) {
				t.Errorf("stderr lacks %q:\n%s", summary, rt.Stderr)
			}
			if strings.Contains(rt.Stderr, hint) {
				t.Errorf("an invalid config is reported as a usage error:\n%s", rt.Stderr)
			}
		})
	}
}

func TestConfigCheckValid(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, deployment{
		etcd:       "http://127.0.0.1:12379",
		tokyo:      "127.0.0.1:18008",
		osaka:      "127.0.0.1:18009",
		witness:    "127.0.0.1:18010",
		secretMode: 0o600,
	})
	ok := path + ": ok: 3 sites, 1 zones, 1 secondaries, 0 operators\n"
	tests := []struct {
		name string
		env  []string
		args []string
	}{
		{"argument", nil, []string{"config", "check", path}},
		{"--config", nil, []string{"config", "check", "--config", path}},
		{"REGDR_CONFIG", []string{"REGDR_CONFIG=" + path}, []string{"config", "check"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runEnv(t, tc.env, tc.args...)
			if r.Code != exitOK || r.Stdout != ok || r.Stderr != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 0, stdout %q", r.Code, r.Stdout, r.Stderr, ok)
			}
			assertNoSecret(t, r.Stdout, r.Stderr)
		})
	}
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		r := run(t, "config", "check", "-o", "json", path)
		if r.Code != exitOK {
			t.Errorf("exit %d, want 0\nstderr: %s", r.Code, r.Stderr)
		}
		c := decodeCheck(t, r.Stdout)
		if !c.Valid || c.File != path || len(c.Problems) != 0 {
			t.Errorf("got %+v, want valid with no problems", c)
		}
		// Scripts iterate .problems[]; null would break them.
		if string(c.Raw) != "[]" {
			t.Errorf("problems is %s, want []", c.Raw)
		}
	})
}

func TestConfigCheckMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "absent.yaml")
	r := run(t, "config", "check", path)
	if r.Code != exitFailed {
		t.Errorf("exit %d, want %d\nstderr: %s", r.Code, exitFailed, r.Stderr)
	}
	if !strings.HasPrefix(r.Stdout, path+": ") || !strings.Contains(r.Stdout, "no such file or directory") {
		t.Errorf("stdout does not name %s and why it failed:\n%s", path, r.Stdout)
	}
	if !strings.Contains(r.Stderr, path) {
		t.Errorf("stderr does not name %s:\n%s", path, r.Stderr)
	}

	r = run(t, "config", "check", "-o", "json", path)
	if r.Code != exitFailed {
		t.Errorf("-o json: exit %d, want %d", r.Code, exitFailed)
	}
	c := decodeCheck(t, r.Stdout)
	if c.Valid || len(c.Problems) != 1 || c.Problems[0].File != path || !strings.Contains(c.Problems[0].Message, path) {
		t.Errorf("-o json: got %+v, want one problem naming %s", c, path)
	}
}

// TestConfigCheckSecretMode: a TSIG secret readable by others is a problem
// that names the field and the mode, and the secret stays out of the
// output.
func TestConfigCheckSecretMode(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, deployment{
		etcd:       "http://127.0.0.1:12379",
		tokyo:      "127.0.0.1:18008",
		osaka:      "127.0.0.1:18009",
		witness:    "127.0.0.1:18010",
		secretMode: 0o644,
	})
	r := run(t, "config", "check", path)
	if r.Code != exitFailed {
		t.Errorf("exit %d, want %d\nstderr: %s", r.Code, exitFailed, r.Stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], path+":") ||
		!strings.Contains(lines[0], ": tsig_keys[0].secret_file: ") || !strings.Contains(lines[0], "mode 0644") {
		t.Errorf("want one problem naming tsig_keys[0].secret_file and mode 0644, got:\n%s", r.Stdout)
	}
	assertNoSecret(t, r.Stdout, r.Stderr)

	r = run(t, "config", "check", "-o", "json", path)
	if r.Code != exitFailed {
		t.Errorf("-o json: exit %d, want %d", r.Code, exitFailed)
	}
	c := decodeCheck(t, r.Stdout)
	if c.Valid || len(c.Problems) != 1 {
		t.Fatalf("-o json: got %+v, want one problem", c)
	}
	p := c.Problems[0]
	if p.Path != "tsig_keys[0].secret_file" || !strings.Contains(p.Message, "0644") || p.Line < 1 {
		t.Errorf("-o json: got %+v, want the secret_file field, its line and mode 0644", p)
	}
	assertNoSecret(t, r.Stdout, r.Stderr)
}
