package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wantRE finds the expectations written into invalid/ fixtures:
//
//	gossip_addr: osaka  # want "sites[1].gossip_addr: bad address ..."
//
// Each quoted string is "path: message" of a problem expected on that line,
// so a fixture states both the field path and the line it must be reported
// at, and the test needs no line numbers of its own.
var wantRE = regexp.MustCompile(`#\s*want\s+(".*)$`)

type lineProblem struct {
	line int
	text string // "path: message"
}

func (lp lineProblem) String() string { return fmt.Sprintf("line %d: %s", lp.line, lp.text) }

func readWants(t *testing.T, data []byte) []lineProblem {
	t.Helper()
	var wants []lineProblem
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		m := wantRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		rest := strings.TrimSpace(m[1])
		for rest != "" {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("line %d: bad want %q: %v", line, rest, err)
			}
			s, _ := strconv.Unquote(q)
			wants = append(wants, lineProblem{line, s})
			rest = strings.TrimSpace(rest[len(q):])
		}
	}
	return wants
}

func problemText(p Problem) string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// TestParseInvalid runs every fixture in testdata/invalid (one per class of
// bad config) and requires exactly the problems its want comments name, at
// their lines: nothing missing, nothing extra.
func TestParseInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := readWants(t, data)
			if len(wants) == 0 {
				t.Fatal("fixture has no want comments")
			}
			_, probs := Parse(data, file)
			var got []lineProblem
			for _, p := range probs {
				if p.File != file {
					t.Errorf("problem %v: file %q, want %q", p, p.File, file)
				}
				if p.Column < 1 && p.Path != "" {
					t.Errorf("problem %v: no column", p)
				}
				got = append(got, lineProblem{p.Line, problemText(p)})
			}
			for _, w := range wants {
				if !slices.Contains(got, w) {
					t.Errorf("missing  %v", w)
				}
			}
			for _, g := range got {
				if !slices.Contains(wants, g) {
					t.Errorf("unexpected %v", g)
				}
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, probs := Parse(data, "testdata/valid.yaml")
	if len(probs) > 0 {
		t.Fatalf("valid.yaml has problems:\n%v", probs)
	}
	def := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"deployment", c.Deployment, "test"},
		{"explicit gate kept", c.Gates.MaxRemovedPercent, 1.5},
		{"default gate filled", c.Gates.MaxAddedPercent, def.Gates.MaxAddedPercent},
		{"default duration", c.Gates.MinSignatureValidity, Duration{72 * time.Hour}},
		{"default etcd prefix", c.Etcd.Prefix, "/regdr"},
		{"default dial timeout", c.Etcd.DialTimeout, Duration{2 * time.Second}},
		{"explicit gossip kept", c.Agent.Gossip, "local"},
		{"default lease ttl beside it", c.Agent.LeaseTTL, def.Agent.LeaseTTL},
		{"default tsig algorithm", c.TSIGKeys[0].Algorithm, "hmac-sha256"},
		{"path", c.Path(), "testdata/valid.yaml"},
		{"data sites", len(c.DataSites()), 2},
		{"witness", c.Sites[2].Witness, true},
		{"required names", c.Gates.RequiredNames, []string{"test.", "nic.test."}},
		{"ipv6 secondary", c.Secondary[1].Addr, "[::1]:53"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s: got %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
}

// TestRoundTrip: what the lab writes with Marshal, every agent reads back
// as the same config.
func TestRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromFile, probs := Parse(data, "deployment.yaml")
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	built := Default()
	built.path = "deployment.yaml"
	built.Deployment = "lab"
	built.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
	built.Etcd.DialTimeout = Duration{1500 * time.Millisecond}
	built.Sites = []Site{
		{Name: "tokyo", AgentAddr: "127.0.0.1:1", GossipAddr: "127.0.0.1:2", Postgres: "host=127.0.0.1 port=3", DNSAddr: "127.0.0.1:4", KeyDir: "/k/t", ZoneDir: "/z/t"},
		{Name: "osaka", AgentAddr: "127.0.0.2:1", GossipAddr: "127.0.0.2:2", Postgres: "host='a b' port=3", DNSAddr: "127.0.0.2:4", KeyDir: "/k/o", ZoneDir: "/z/o"},
	}
	built.Zones = []Zone{{Origin: "lab.", Source: "file", TSIGKey: "xfr"}}
	built.TSIGKeys = []TSIGKey{{Name: "xfr", Algorithm: "hmac-sha512", SecretFile: "/s/xfr: secret #1"}}
	built.Gates.ReconcileQuery = "SELECT count(*)\nFROM domains\n"
	built.Agent.LeaseTTL = Duration{90 * time.Minute}

	for name, c := range map[string]*Config{"from file": fromFile, "built in Go": built} {
		t.Run(name, func(t *testing.T) {
			if probs := c.Validate(); len(probs) > 0 {
				t.Fatalf("input invalid:\n%v", probs)
			}
			out, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, probs := Parse(out, c.Path())
			if len(probs) > 0 {
				t.Fatalf("marshalled config has problems:\n%v\n%s", probs, out)
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("round trip changed the config\nwant %+v\ngot  %+v\nyaml:\n%s", c, back, out)
			}
		})
	}
}

// TestParseNotAConfig covers input that is not a YAML mapping at all: the
// Config is nil and the one problem still has a line.
func TestParseNotAConfig(t *testing.T) {
	tests := []struct {
		name, in string
		line     int
		msg      string
	}{
		{"empty", "", 1, "empty config"},
		{"comment only", "# nothing\n", 1, "empty config"},
		{"list", "- a\n- b\n", 1, "a config is a mapping of fields (deployment:, etcd:, sites:, ...), got a list"},
		{"scalar", "\n\nhello\n", 3, "a config is a mapping of fields (deployment:, etcd:, sites:, ...), got \"hello\""},
		{"two documents", "deployment: a\n---\ndeployment: b\n", 2, "more than one YAML document; a config is one document"},
		{"control character", "deployment: a\netcd: \x01\n", 2, "not UTF-8 text, or holds a control character YAML forbids"},
		{"invalid utf-8", "deployment: \xff\n", 1, "not UTF-8 text, or holds a control character YAML forbids"},
		{"unclosed flow", "etcd:\n  endpoints: [a,\n", 2, "YAML syntax: did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, probs := Parse([]byte(tt.in), "f.yaml")
			if c != nil {
				t.Errorf("config = %+v, want nil", c)
			}
			if len(probs) != 1 {
				t.Fatalf("problems = %v, want one", probs)
			}
			if p := probs[0]; p.Line != tt.line || p.Msg != tt.msg || p.File != "f.yaml" {
				t.Errorf("problem = %#v, want line %d %q", p, tt.line, tt.msg)
			}
		})
	}
}

// TestAliasBomb: aliases naming one big mapping many times must not make
// Parse do work out of proportion to the file.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x: &m {")
	for i := range 2000 {
		fmt.Fprintf(&b, "k%d: 1, ", i)
	}
	b.WriteString("}\nsites: [")
	for range 2000 {
		b.WriteString("*m, ")
	}
	b.WriteString("]\n")
	start := time.Now()
	_, probs := Parse([]byte(b.String()), "bomb.yaml")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
	if len(probs) > b.Len()+1000 {
		t.Errorf("%d problems for %d bytes", len(probs), b.Len())
	}
	if !slices.ContainsFunc(probs, func(p Problem) bool { return strings.Contains(p.Msg, "aliases expand") }) {
		t.Errorf("no alias expansion problem among %d", len(probs))
	}
}

func TestProblemError(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "d.yaml", Line: 14, Column: 18, Path: "sites[1].gossip_addr", Msg: `bad address "x": missing port`},
			`d.yaml:14:18: sites[1].gossip_addr: bad address "x": missing port`},
		{Problem{Path: "sites", Msg: "missing site"}, "sites: missing site"},
		{Problem{File: "d.yaml", Line: 3, Column: 1, Msg: "YAML syntax: x"}, "d.yaml:3:1: YAML syntax: x"},
		{Problem{File: "d.yaml", Line: 3, Msg: "YAML syntax: x"}, "d.yaml:3: YAML syntax: x"},
		{Problem{File: "d.yaml", Path: "zones", Msg: "m"}, "d.yaml: zones: m"},
	}
	for _, tt := range tests {
		if got := tt.p.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	ps := Problems{tests[0].p, tests[1].p}
	if got, want := ps.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Problems.Error() = %q, want %q", got, want)
	}
	if err := Problems(nil).Err(); err != nil {
		t.Errorf("empty Problems.Err() = %v, want nil", err)
	}
	if err := ps.Err(); err == nil {
		t.Error("Problems.Err() = nil with problems")
	}
}
