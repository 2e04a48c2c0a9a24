package gates

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
)

// TestRealSigners signs testdata/small.zone with the signers registries
// actually run, keys generated for the test in t.TempDir(), and checks that
// every gate passes with no finding at all: a gate that cries wolf on a
// correctly signed zone would be overridden, and then it protects nothing.
func TestRealSigners(t *testing.T) {
	src, err := filepath.Abs(filepath.Join("testdata", "small.zone"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		chain string
		sign  func(t *testing.T, dir string) string // returns the signed file
	}{
		{"BIND dnssec-signzone NSEC", "NSEC", bind()},
		{"BIND dnssec-signzone NSEC3", "NSEC3", bind("-3", "-", "-H", "0")},
		{"BIND dnssec-signzone NSEC3 opt-out", "NSEC3", bind("-3", "-", "-H", "0", "-A")},
		{"ldns-signzone NSEC", "NSEC", ldns()},
		{"ldns-signzone NSEC3 opt-out", "NSEC3", ldns("-n", "-p", "-t", "0")},
		{"zonesign NSEC ECDSAP256SHA256", "NSEC", ours(dns.ECDSAP256SHA256, zonesign.Options{})},
		{"zonesign NSEC3 opt-out ED25519", "NSEC3", ours(dns.ED25519, zonesign.Options{NSEC3: true, OptOut: true})},
		{"zonesign NSEC RSASHA256", "NSEC", ours(dns.RSASHA256, zonesign.Options{})},
	}
	prev := load(t, "small.zone", "test.")
	prevRRs := prev.RRs()
	soa := dns.Copy(prev.SOA()).(*dns.SOA)
	soa.Serial--
	prevRRs[0] = soa
	previous := mustZone(t, prevRRs)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "small.zone"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			signed := tt.sign(t, dir)
			z := loadAbs(t, signed, "test.")
			if z.Counts["RRSIG"] == 0 || z.Counts["DNSKEY"] == 0 {
				t.Fatalf("%s produced no signatures: %v", tt.name, z.Counts)
			}
			// Where the packed-record hash applies, it is miekg's.
			t.Logf("%d signed-data hashes compared with miekg's", checkWireHashes(t, NewIndex(z)))
			cfg := DefaultConfig()
			cfg.RequiredNames = []string{"nic.test.", "*.wild.test."}
			rep := Run(context.Background(), Default(cfg), &Input{
				Zone: z, Previous: previous, Published: previous, Now: time.Now(),
				ExpectedDelegations: ptr(21),
			})
			for _, r := range rep.Results {
				if r.Total != 0 || r.Status == StatusFail {
					t.Errorf("%s: %s (%s): %v", r.Gate, r.Status, r.Reason, r.Findings)
				}
			}
			d, _ := rep.Result(GateDNSSEC)
			if d.Status != StatusPass || !strings.Contains(d.Reason, tt.chain+" chain complete") {
				t.Errorf("dnssec: %s %q, want a pass over the %s chain", d.Status, d.Reason, tt.chain)
			}
			if !rep.Pass {
				t.Errorf("report fails: %v", rep.Failed())
			}

			// The pass is not vacuous: the same output less one
			// signature is refused, naming the name.
			broken := mustZone(t, dropSigs(z.RRs(), "nic.test.", dns.TypeA, 0))
			rep = Run(context.Background(), Default(cfg), &Input{Zone: broken, Previous: previous, Now: time.Now()})
			d, _ = rep.Result(GateDNSSEC)
			if got := rep.Failed(); len(got) != 1 || got[0] != GateDNSSEC || !slices.Equal(names(d, "unsigned"), []string{"nic.test."}) {
				t.Errorf("one RRSIG removed: failed %v, dnssec findings %v", got, d.Findings)
			}
		})
	}
}

// run runs a signer tool in dir (they write key and dsset files into
// their working directory), failing the test with its output on error.
func run(t *testing.T, dir string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func bind(extra ...string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		run(t, dir, "dnssec-keygen", "-q", "-K", dir, "-a", "ECDSAP256SHA256", "-f", "KSK", "test.")
		run(t, dir, "dnssec-keygen", "-q", "-K", dir, "-a", "ECDSAP256SHA256", "test.")
		out := filepath.Join(dir, "signed.zone")
		argv := append([]string{"dnssec-signzone", "-S", "-K", dir, "-O", "full", "-o", "test.", "-f", out}, extra...)
		run(t, dir, append(argv, filepath.Join(dir, "small.zone"))...)
		return out
	}
}

func ldns(extra ...string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		ksk := run(t, dir, "ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "test.")
		zsk := run(t, dir, "ldns-keygen", "-a", "ECDSAP256SHA256", "test.")
		out := filepath.Join(dir, "signed.zone")
		argv := append([]string{"ldns-signzone", "-f", out}, extra...)
		run(t, dir, append(argv, "small.zone", ksk, zsk)...)
		return out
	}
}

func ours(alg uint8, opts zonesign.Options) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		ksk, err := zonesign.GenerateKey(dir, "test.", alg, true)
		if err != nil {
			t.Fatal(err)
		}
		zsk, err := zonesign.GenerateKey(dir, "test.", alg, false)
		if err != nil {
			t.Fatal(err)
		}
		base := loadAbs(t, filepath.Join(dir, "small.zone"), "test.")
		rrs, err := zonesign.Sign(context.Background(), base.RRs(), "test.", []*zonesign.Key{ksk, zsk}, opts)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "signed.zone")
		if err := zonesign.WriteFileAtomic(out, rrs); err != nil {
			t.Fatal(err)
		}
		return out
	}
}
