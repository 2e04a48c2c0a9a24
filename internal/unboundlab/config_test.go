package unboundlab

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func goldenOptions(t *testing.T, dir string) Options {
	return Options{
		Dir:    dir,
		Listen: netip.MustParseAddrPort("127.0.50.1:5353"),
		Zones: []Zone{
			{
				Origin:    "Test.",
				Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.40.1:10053"), netip.MustParseAddrPort("127.0.40.2:53")},
				Anchors:   []dns.RR{mustRR(t, "test. 3600 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==")},
			},
			{
				Origin:    "other.example.",
				Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.40.1:10053")},
				Anchors:   []dns.RR{mustRR(t, "other.example. 3600 IN DS 20326 13 2 e06d44b80b8f1d39a95c0b0d7c65d08458e880409bbc683457104237c7f8ec8d")},
			},
		},
	}
}

// The rendered config is reviewed as a diff against the golden file, and
// Unbound's own checker accepts it.
func TestConfigGolden(t *testing.T) {
	dir := "/var/lib/regdr-lab/resolver" // a fixed path for the golden file; nothing is written there
	got := render(goldenOptions(t, dir))
	golden := filepath.Join("testdata", "unbound.conf.golden")
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
		t.Errorf("unbound.conf differs from %s (rerun with -update and review the diff):\n%s", golden, got)
	}

	tmp := t.TempDir()
	path, err := WriteConfig(goldenOptions(t, tmp))
	if err != nil {
		t.Fatal(err)
	}
	paths, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, paths.Checkconf, path).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf %s: %v\n%s", path, err, out)
	}
	// The checker reads back what we meant (its -o prints one option).
	for opt, want := range map[string]string{"do-ip6": "no", "module-config": "validator iterator", "do-not-query-localhost": "no"} {
		out, err := exec.CommandContext(ctx, paths.Checkconf, "-o", opt, path).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("unbound-checkconf -o %s: %q (%v), want %q", opt, out, err, want)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	anchor := mustRR(t, "lab.test. 3600 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==")
	up := netip.MustParseAddrPort("127.0.0.1:10053")
	ok := func() Options {
		return Options{Dir: "/tmp/x", Listen: netip.MustParseAddrPort("127.0.0.1:5300"),
			Zones: []Zone{{Origin: "lab.test.", Upstreams: []netip.AddrPort{up}, Anchors: []dns.RR{anchor}}}}
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"relative dir", func(o *Options) { o.Dir = "lab" }, "absolute path"},
		{"quote in dir", func(o *Options) { o.Dir = "/tmp/a\"b" }, "cannot hold"},
		{"no listen port", func(o *Options) { o.Listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0) }, "needs an address and a port"},
		{"listen off loopback", func(o *Options) { o.Listen = netip.MustParseAddrPort("192.0.2.1:53") }, "not an IPv4 loopback"},
		{"listen on IPv6", func(o *Options) { o.Listen = netip.MustParseAddrPort("[::1]:53") }, "not an IPv4 loopback"},
		{"verbosity", func(o *Options) { o.Verbosity = 9 }, "Verbosity"},
		{"no zones", func(o *Options) { o.Zones = nil }, "no zones"},
		{"relative origin", func(o *Options) { o.Zones[0].Origin = "lab.test" }, "not an absolute domain name"},
		{"root", func(o *Options) { o.Zones[0].Origin = "." }, "below the root"},
		{"quote in origin", func(o *Options) { o.Zones[0].Origin = "la\"b.test." }, "not an absolute domain name"},
		{"duplicate zone", func(o *Options) { o.Zones = append(o.Zones, o.Zones[0]) }, "listed twice"},
		{"no upstream", func(o *Options) { o.Zones[0].Upstreams = nil }, "no upstreams"},
		{"upstream off loopback", func(o *Options) {
			o.Zones[0].Upstreams = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:53")}
		}, "not an IPv4 loopback"},
		{"no anchor", func(o *Options) { o.Zones[0].Anchors = nil }, "no trust anchor"},
		{"anchor for another zone", func(o *Options) {
			o.Zones[0].Anchors = []dns.RR{mustRR(t, "other.test. 3600 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==")}
		}, "is not the zone"},
		{"anchor of wrong type", func(o *Options) { o.Zones[0].Anchors = []dns.RR{mustRR(t, "lab.test. 3600 IN A 127.0.0.1")} }, "want DNSKEY or DS"},
		{"anchor without zone bit", func(o *Options) {
			o.Zones[0].Anchors = []dns.RR{mustRR(t, "lab.test. 3600 IN DNSKEY 1 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==")}
		}, "zone key bit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok()
			tc.change(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
			if _, werr := WriteConfig(o); werr == nil {
				t.Error("WriteConfig wrote a config Validate refuses")
			}
		})
	}
}

// The do-not-query-address list is exactly "not 127.0.0.0/8": every
// address outside loopback is covered, none inside is.
func TestNotLoopbackCoversEverythingElse(t *testing.T) {
	var prefixes []netip.Prefix
	for _, s := range notLoopback {
		prefixes = append(prefixes, netip.MustParsePrefix(s))
	}
	covered := func(a netip.Addr) bool {
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	// Every /8 decides the question: the prefixes are /8 or shorter.
	for first := 0; first < 256; first++ {
		for _, last := range []byte{0, 1, 255} {
			a := netip.AddrFrom4([4]byte{byte(first), 17, 42, last})
			if want := first != 127; covered(a) != want {
				t.Errorf("%v: covered=%v, want %v", a, covered(a), want)
			}
		}
	}
	for _, p := range prefixes {
		if p.Bits() > 8 {
			t.Errorf("prefix %v is longer than /8: the sweep above would not prove coverage", p)
		}
	}
}

func TestAnchorsFromKeyDir(t *testing.T) {
	dir := t.TempDir()
	ksk, err := zonesign.GenerateKey(dir, "lab.test.", dns.ECDSAP256SHA256, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zonesign.GenerateKey(dir, "lab.test.", dns.ECDSAP256SHA256, false); err != nil {
		t.Fatal(err)
	}
	// A KSK of another zone in the same directory is not an anchor here.
	if _, err := zonesign.GenerateKey(dir, "other.test.", dns.ECDSAP256SHA256, true); err != nil {
		t.Fatal(err)
	}
	got, err := AnchorsFromKeyDir(dir, "lab.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d anchors, want the one KSK: %v", len(got), got)
	}
	k := got[0].(*dns.DNSKEY)
	if k.KeyTag() != ksk.Tag || k.PublicKey != ksk.DNSKEY.PublicKey || k.Flags != 257 {
		t.Errorf("anchor %v, want KSK tag %d", k, ksk.Tag)
	}
	// The private halves are never needed: an anchor is read with them
	// unreadable.
	privs, _ := filepath.Glob(filepath.Join(dir, "*.private"))
	for _, p := range privs {
		os.Remove(p)
	}
	if _, err := AnchorsFromKeyDir(dir, "lab.test."); err != nil {
		t.Errorf("without .private files: %v", err)
	}

	for name, fn := range map[string]func() (string, string){
		"no KSK": func() (string, string) {
			d := t.TempDir()
			zonesign.GenerateKey(d, "lab.test.", 13, false)
			return d, "lab.test."
		},
		"empty dir":     func() (string, string) { return t.TempDir(), "lab.test." },
		"missing dir":   func() (string, string) { return filepath.Join(t.TempDir(), "none"), "lab.test." },
		"relative name": func() (string, string) { return dir, "lab.test" },
	} {
		d, origin := fn()
		if a, err := AnchorsFromKeyDir(d, origin); err == nil {
			t.Errorf("%s: got anchors %v, want an error", name, a)
		}
	}
}
