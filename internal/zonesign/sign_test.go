package zonesign

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testOrigin = "test."

// testZone is a small TLD: apex SOA and NS (one server in the zone with
// glue, one outside), n delegations of which every third has a DS and
// every fifth uses in-zone name servers with glue, and one delegation two
// labels down so that NSEC3 needs an empty non-terminal.
func testZone(t testing.TB, n int) []dns.RR {
	t.Helper()
	lines := []string{
		"test. 3600 IN SOA ns1.nic.test. hostmaster.test. 1 1800 900 604800 3600",
		"test. 86400 IN NS ns1.nic.test.",
		"test. 86400 IN NS a.nic.example.",
		"ns1.nic.test. 86400 IN A 192.0.2.1",
		"ns1.nic.test. 86400 IN AAAA 2001:db8::1",
		"sub.ent.test. 86400 IN NS ns.provider.example.",
	}
	for i := range n {
		owner := label(i) + ".test."
		if i%5 == 0 {
			lines = append(lines,
				fmt.Sprintf("%s 86400 IN NS ns1.%s", owner, owner),
				fmt.Sprintf("%s 86400 IN NS ns2.%s", owner, owner),
				fmt.Sprintf("ns1.%s 86400 IN A 192.0.2.%d", owner, 10+i%200),
				fmt.Sprintf("ns2.%s 86400 IN A 192.0.2.%d", owner, 11+i%200),
				fmt.Sprintf("ns2.%s 86400 IN AAAA 2001:db8::%x:%x", owner, (i+2)>>16, (i+2)&0xffff),
			)
		} else {
			lines = append(lines,
				fmt.Sprintf("%s 86400 IN NS ns1.hosting%02d.net.", owner, i%7),
				fmt.Sprintf("%s 86400 IN NS ns2.hosting%02d.net.", owner, i%7),
			)
		}
		if i%3 == 0 {
			lines = append(lines, fmt.Sprintf("%s 3600 IN DS %d 13 2 %064x", owner, (1000+i)%65536, i+1))
		}
	}
	rrs := make([]dns.RR, 0, len(lines))
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("test zone line %q: %v", l, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

// label is the i-th delegation's label: a hash prefix spreads the names so
// that canonical order differs from insertion order.
func label(i int) string { return fmt.Sprintf("h%03x-%d", (i*2654435761)&0xfff, i) }

// testKeys makes a KSK and a ZSK of alg in a fresh directory.
func testKeys(t testing.TB, alg uint8) []*Key {
	t.Helper()
	dir := t.TempDir()
	ksk, err := GenerateKey(dir, testOrigin, alg, true)
	if err != nil {
		t.Fatal(err)
	}
	zsk, err := GenerateKey(dir, testOrigin, alg, false)
	if err != nil {
		t.Fatal(err)
	}
	return []*Key{ksk, zsk}
}

// verifiers are the three independent DNSSEC checkers every signed zone
// must pass. (ldns-verify-zone's -h warns it "will error on opted-out
// delegations"; version 1.8 accepts our opt-out chain, so it checks those
// zones too.)
var verifiers = []struct {
	name    string
	command func(file string) []string
}{
	{"dnssec-verify", func(f string) []string { return []string{"dnssec-verify", "-o", testOrigin, f} }},
	{"ldns-verify-zone", func(f string) []string { return []string{"ldns-verify-zone", f} }},
	{"kzonecheck", func(f string) []string { return []string{"kzonecheck", "-o", testOrigin, "-d", "on", f} }},
}

func runTool(t *testing.T, argv []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

func TestSignedZonePassesRealVerifiers(t *testing.T) {
	tests := []struct {
		name   string
		alg    uint8
		nsec3  bool
		optOut bool
	}{
		{"nsec ecdsa", dns.ECDSAP256SHA256, false, false},
		{"nsec3 ecdsa", dns.ECDSAP256SHA256, true, false},
		{"nsec3 opt-out ecdsa", dns.ECDSAP256SHA256, true, true},
		{"nsec ed25519", dns.ED25519, false, false},
		{"nsec3 rsasha256", dns.RSASHA256, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys := testKeys(t, tc.alg)
			signed, err := Sign(context.Background(), testZone(t, 50), testOrigin, keys,
				Options{NSEC3: tc.nsec3, OptOut: tc.optOut, Workers: 3})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "test.zone")
			if err := WriteFileAtomic(file, signed); err != nil {
				t.Fatal(err)
			}
			for _, v := range verifiers {
				if out, err := runTool(t, v.command(file)); err != nil {
					t.Errorf("%s rejects the zone: %v\n%s", v.name, err, out)
				}
			}
		})
	}
}

func TestTamperedZoneFailsVerify(t *testing.T) {
	signed, err := Sign(context.Background(), testZone(t, 50), testOrigin, testKeys(t, 0), Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.zone")
	if err := WriteFileAtomic(good, signed); err != nil {
		t.Fatal(err)
	}
	for _, v := range verifiers {
		if out, err := runTool(t, v.command(good)); err != nil {
			t.Fatalf("%s rejects the untampered zone: %v\n%s", v.name, err, out)
		}
	}

	// Change one signed record's RDATA after signing: the apex server's
	// glue address, authoritative and signed, as an attacker or a bit
	// flip would.
	tampered := make([]dns.RR, len(signed))
	found := false
	for i, rr := range signed {
		if a, ok := rr.(*dns.A); ok && a.Hdr.Name == "ns1.nic.test." {
			c := dns.Copy(a).(*dns.A)
			c.A = c.A.To4()
			c.A[3] ^= 0x40
			rr = c
			found = true
		}
		tampered[i] = rr
	}
	if !found {
		t.Fatal("no ns1.nic.test. A record to tamper with")
	}
	bad := filepath.Join(dir, "bad.zone")
	if err := WriteFileAtomic(bad, tampered); err != nil {
		t.Fatal(err)
	}
	for _, v := range verifiers {
		if out, err := runTool(t, v.command(bad)); err == nil {
			t.Errorf("%s accepted a zone with a tampered signed record:\n%s", v.name, out)
		}
	}
}

// zoneIndex groups a signed zone for structural assertions.
type zoneIndex struct {
	sets map[string]map[uint16]int      // name -> type -> record count
	sigs map[string]map[uint16][]uint16 // name -> covered type -> key tags
}

func index(rrs []dns.RR) zoneIndex {
	z := zoneIndex{sets: map[string]map[uint16]int{}, sigs: map[string]map[uint16][]uint16{}}
	for _, rr := range rrs {
		h := rr.Header()
		if s, ok := rr.(*dns.RRSIG); ok {
			if z.sigs[h.Name] == nil {
				z.sigs[h.Name] = map[uint16][]uint16{}
			}
			z.sigs[h.Name][s.TypeCovered] = append(z.sigs[h.Name][s.TypeCovered], s.KeyTag)
			continue
		}
		if z.sets[h.Name] == nil {
			z.sets[h.Name] = map[uint16]int{}
		}
		z.sets[h.Name][h.Rrtype]++
	}
	return z
}

func TestSignWhatIsSignedAndWhatIsNot(t *testing.T) {
	keys := testKeys(t, 0)
	ksk, zsk := keys[0].Tag, keys[1].Tag
	in := testZone(t, 50)
	// Stale DNSSEC data in the input must be dropped, not kept.
	stale, _ := dns.NewRR("test. 3600 IN NSEC zzz.test. SOA NS")
	in = append(in, stale)

	signed, err := Sign(context.Background(), in, testOrigin, keys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	z := index(signed)
	d0 := label(0) + ".test." // in-zone name servers and a DS

	tests := []struct {
		name    string
		owner   string
		rrtype  uint16
		present bool     // the RRset exists
		signers []uint16 // tags of its RRSIGs, nil for unsigned
	}{
		{"apex SOA by ZSK", "test.", dns.TypeSOA, true, []uint16{zsk}},
		{"apex NS by ZSK", "test.", dns.TypeNS, true, []uint16{zsk}},
		{"DNSKEY by KSK only", "test.", dns.TypeDNSKEY, true, []uint16{ksk}},
		{"apex NSEC by ZSK", "test.", dns.TypeNSEC, true, []uint16{zsk}},
		{"authoritative glue of apex NS signed", "ns1.nic.test.", dns.TypeA, true, []uint16{zsk}},
		{"delegation NS unsigned", d0, dns.TypeNS, true, nil},
		{"DS at delegation signed", d0, dns.TypeDS, true, []uint16{zsk}},
		{"NSEC at delegation signed", d0, dns.TypeNSEC, true, []uint16{zsk}},
		{"glue below cut unsigned", "ns1." + d0, dns.TypeA, true, nil},
		{"glue below cut has no NSEC", "ns1." + d0, dns.TypeNSEC, false, nil},
		{"empty non-terminal has no NSEC", "ent.test.", dns.TypeNSEC, false, nil},
		{"no NSEC3PARAM in an NSEC zone", "test.", dns.TypeNSEC3PARAM, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := z.sets[tc.owner][tc.rrtype] > 0; got != tc.present {
				t.Fatalf("%s/%s present = %v, want %v", tc.owner, dns.TypeToString[tc.rrtype], got, tc.present)
			}
			if got := z.sigs[tc.owner][tc.rrtype]; !slices.Equal(got, tc.signers) {
				t.Fatalf("%s/%s signed by %v, want %v", tc.owner, dns.TypeToString[tc.rrtype], got, tc.signers)
			}
		})
	}
	if n := z.sets["test."][dns.TypeNSEC]; n != 1 {
		t.Errorf("apex has %d NSEC records, want 1 (the stale input NSEC must be replaced)", n)
	}

	// Re-signing signed output gives the same records apart from the
	// signatures' randomness: the input's DNSSEC records are all dropped.
	again, err := Sign(context.Background(), signed, testOrigin, keys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(signed) {
		t.Errorf("re-signing changed the record count: %d -> %d", len(signed), len(again))
	}
}

func TestSignNSEC3Chain(t *testing.T) {
	keys := testKeys(t, 0)
	for _, optOut := range []bool{false, true} {
		t.Run(fmt.Sprintf("opt-out=%v", optOut), func(t *testing.T) {
			signed, err := Sign(context.Background(), testZone(t, 50), testOrigin, keys, Options{NSEC3: true, OptOut: optOut})
			if err != nil {
				t.Fatal(err)
			}
			var chain []*dns.NSEC3
			params := 0
			for _, rr := range signed {
				switch r := rr.(type) {
				case *dns.NSEC3:
					chain = append(chain, r)
				case *dns.NSEC3PARAM:
					params++
					if r.Iterations != 0 || r.Salt != "" || r.Flags != 0 {
						t.Errorf("NSEC3PARAM %v: want RFC 9276 parameters (0 iterations, no salt, flags 0)", r)
					}
				case *dns.NSEC:
					t.Errorf("NSEC record %v in an NSEC3 zone", r)
				}
			}
			if params != 1 {
				t.Fatalf("%d NSEC3PARAM records, want 1", params)
			}
			// 50 delegations (17 with DS), apex, ns1.nic.test., nic.test.
			// and ent.test. (empty non-terminals), sub.ent.test.
			want := 50 + 5
			if optOut {
				want = 17 + 4 // insecure delegations (and sub.ent.test.) left out
			}
			if len(chain) != want {
				t.Fatalf("%d NSEC3 records, want %d", len(chain), want)
			}
			for i, r := range chain {
				next := chain[(i+1)%len(chain)]
				if !strings.EqualFold(r.NextDomain+"."+testOrigin, next.Hdr.Name) {
					t.Fatalf("chain broken at %s: next %s, following record %s", r.Hdr.Name, r.NextDomain, next.Hdr.Name)
				}
				if got := r.Flags == 1; got != optOut {
					t.Fatalf("%s opt-out flag %v, want %v", r.Hdr.Name, got, optOut)
				}
			}
			// Every name that must be provable resolves to its record.
			for _, name := range []string{"test.", "nic.test.", "ent.test.", label(0) + ".test."} {
				if !slices.ContainsFunc(chain, func(r *dns.NSEC3) bool { return r.Match(name) }) {
					t.Errorf("no NSEC3 matches %s", name)
				}
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	keys := testKeys(t, 0)
	mk := func(extra ...string) []dns.RR {
		rrs := testZone(t, 3)
		for _, l := range extra {
			rr, err := dns.NewRR(l)
			if err != nil {
				t.Fatal(err)
			}
			rrs = append(rrs, rr)
		}
		return rrs
	}
	noSOA := slices.DeleteFunc(mk(), func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeSOA })
	tests := []struct {
		name   string
		rrs    []dns.RR
		origin string
		keys   []*Key
		want   string
	}{
		{"doubled origin is outside the zone", mk("kumo.test.se. 86400 IN NS ns.example."), "test.", keys, "outside the zone"},
		{"origin without trailing dot", mk(), "test", keys, "not absolute"},
		{"no SOA", noSOA, "test.", keys, "exactly one SOA"},
		{"mixed TTLs in one RRset", mk("test. 300 IN NS ns9.example."), "test.", keys, "one RRset, one TTL"},
		{"DS without delegation", mk("nodeleg.test. 3600 IN DS 1 13 2 " + strings.Repeat("ab", 32)), "test.", keys, "not a delegation"},
		{"no keys", mk(), "test.", nil, "no keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Sign(context.Background(), tc.rrs, tc.origin, tc.keys, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestSignCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Sign(ctx, testZone(t, 50), testOrigin, testKeys(t, 0), Options{})
	if err == nil {
		t.Fatal("Sign with a canceled context succeeded")
	}
}

func TestSignIsCanonicalAndDeterministic(t *testing.T) {
	keys := testKeys(t, 0)
	in := testZone(t, 50)
	a, err := Sign(context.Background(), in, testOrigin, keys, Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(in)
	b, err := Sign(context.Background(), in, testOrigin, keys, Options{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("record counts differ: %d vs %d", len(a), len(b))
	}
	for i := range a {
		// ECDSA signatures are randomised; everything else must match.
		if _, ok := a[i].(*dns.RRSIG); ok {
			ta, tb := a[i].(*dns.RRSIG), b[i].(*dns.RRSIG)
			if ta.Hdr.Name != tb.Hdr.Name || ta.TypeCovered != tb.TypeCovered || ta.KeyTag != tb.KeyTag {
				t.Fatalf("record %d: %v vs %v", i, ta, tb)
			}
			continue
		}
		if a[i].String() != b[i].String() {
			t.Fatalf("record %d: %v vs %v", i, a[i], b[i])
		}
	}
	if _, ok := a[0].(*dns.SOA); !ok {
		t.Errorf("first record is %v, want the SOA", a[0])
	}
	for i := 1; i < len(a); i++ {
		c, err := CompareNames(a[i-1].Header().Name, a[i].Header().Name)
		if err != nil {
			t.Fatal(err)
		}
		if c > 0 {
			t.Fatalf("record %d (%s) sorts before record %d (%s)", i, a[i].Header().Name, i-1, a[i-1].Header().Name)
		}
	}
}

func TestCompareNamesRFC4034Example(t *testing.T) {
	// RFC 4034 §6.1, the example list in canonical order.
	want := []string{
		"example.", "a.example.", "yljkjljk.a.example.", `Z.a.example.`,
		`zABC.a.EXAMPLE.`, "z.example.", `\001.z.example.`, `*.z.example.`, `\200.z.example.`,
	}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, func(a, b string) int {
		c, err := CompareNames(a, b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
	if !slices.Equal(got, want) {
		t.Fatalf("canonical order\n got %q\nwant %q", got, want)
	}
	if c, _ := CompareNames("A.Example.", "a.example."); c != 0 {
		t.Errorf("case must not matter, got %d", c)
	}
}

func TestWriteFileAtomicReplacesWholeFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "test.zone")
	if err := os.WriteFile(path, []byte("old zone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rrs := testZone(t, 5)
	if err := WriteFileAtomic(path, rrs); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteZone(&buf, rrs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, buf.Bytes()) {
		t.Fatalf("file content differs from WriteZone output")
	}
	zp := dns.NewZoneParser(bytes.NewReader(data), "", path)
	n := 0
	for _, ok := zp.Next(); ok; _, ok = zp.Next() {
		n++
	}
	if err := zp.Err(); err != nil || n != len(rrs) {
		t.Fatalf("parsed %d records (err %v), want %d", n, err, len(rrs))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("zone file mode %04o, want 0644", st.Mode().Perm())
	}
	// A relative name must not be written: it would be read relative to
	// whatever origin the reader assumes.
	rel := &dns.NS{Hdr: dns.RR_Header{Name: "kumo", Rrtype: dns.TypeNS, Class: dns.ClassINET}, Ns: "ns.example."}
	if err := WriteFileAtomic(path, []dns.RR{rel}); err == nil {
		t.Fatal("wrote a relative owner name")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
		t.Fatal("a failed write changed the file")
	}
}

func BenchmarkSign100kDelegations(b *testing.B) {
	keys := testKeys(b, 0)
	zone := testZone(b, 100_000)
	for _, nsec3 := range []bool{false, true} {
		b.Run(fmt.Sprintf("nsec3=%v", nsec3), func(b *testing.B) {
			for b.Loop() {
				if _, err := Sign(context.Background(), zone, testOrigin, keys, Options{NSEC3: nsec3}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
