package knotlab

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func labConfig(dir string) Config {
	return Config{
		Dir:    dir,
		Listen: netip.MustParseAddrPort("127.0.0.1:15353"),
		Zones: []ZoneConf{
			{Origin: "Lab.Test", Primaries: []netip.AddrPort{
				netip.MustParseAddrPort("127.0.0.1:15301"), // tokyo
				netip.MustParseAddrPort("127.0.0.2:15302"), // osaka
			}},
			{Origin: "2.0.192.in-addr.arpa.", Primaries: []netip.AddrPort{
				netip.MustParseAddrPort("127.0.0.2:15302"),
				netip.MustParseAddrPort("127.0.0.1:15301"),
			}},
		},
		TSIGName:      "xfr.lab.test.",
		TSIGAlgorithm: "hmac-sha256",
		TSIGSecret:    secret,
	}
}

// The rendered config is reviewed as a golden file (-update rewrites it)
// and must pass Knot's own checker.
func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	c := labConfig(dir)
	path, err := WriteConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600 (it holds the TSIG secret)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The secret is masked so that a failing comparison does not print it.
	got := strings.ReplaceAll(strings.ReplaceAll(string(data), dir, "$DIR"), secret, "$SECRET")
	golden := filepath.Join("testdata", "knot.conf.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("config differs from %s (run with -update and review the diff):\n%s", golden, got)
	}

	paths, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, paths.Knotc, "-c", path, "conf-check").CombinedOutput(); err != nil {
		t.Errorf("knotc conf-check: %v: %s", err, out)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"relative dir", func(c *Config) { c.Dir = "lab/knot" }, "absolute path"},
		{"quote in dir", func(c *Config) { c.Dir = "/tmp/a\"b" }, "cannot hold"},
		{"no listen port", func(c *Config) { c.Listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0) }, "port"},
		{"no zones", func(c *Config) { c.Zones = nil }, "no zones"},
		{"zone without primaries", func(c *Config) { c.Zones[0].Primaries = nil }, "no primaries"},
		{"zone twice", func(c *Config) { c.Zones[1].Origin = "lab.test." }, "listed twice"},
		{"bad zone name", func(c *Config) { c.Zones[0].Origin = "bad zone" }, "not a plain domain name"},
		{"bad key name", func(c *Config) { c.TSIGName = "" }, "TSIG key name"},
		{"bad algorithm", func(c *Config) { c.TSIGAlgorithm = "hmac-md4" }, "TSIG algorithm"},
		{"secret not base64", func(c *Config) { c.TSIGSecret = "abc\"\ndef" }, "not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := labConfig(t.TempDir())
			tt.modify(&c)
			_, err := WriteConfig(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteConfig: %v, want error containing %q", err, tt.want)
			}
			if c.TSIGSecret != "" && strings.Contains(err.Error(), c.TSIGSecret) {
				t.Errorf("error reveals the secret: %q", err)
			}
		})
	}
}

func TestFind(t *testing.T) {
	p, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.Knotd, p.Knotc, p.Kdig} {
		if fi, err := os.Stat(f); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: not an executable (%v)", f, err)
		}
	}
	if !strings.Contains(ErrNotFound.Error(), "apt-get install -y knot knot-dnsutils") {
		t.Errorf("ErrNotFound does not say how to install: %q", ErrNotFound)
	}
}

// Knot that cannot bind its port must fail Start with a useful error and
// leave no process behind.
func TestStartPortBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := labConfig(t.TempDir())
	c.Listen = busy.Addr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k, err := Start(ctx, c)
	if err == nil {
		k.Stop(context.Background())
		t.Fatal("Knot started on a busy port")
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	t.Logf("Start on a busy port: %v", err)
}
