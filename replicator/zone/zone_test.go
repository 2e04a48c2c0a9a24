package zone

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestParseFile(t *testing.T) {
	tests := []struct {
		file       string
		origin     string
		wantErr    error  // errors.Is target, when the error has a sentinel
		wantErrRe  string // regexp the error text must match
		wantSerial uint32
		wantCounts map[string]int
	}{
		{
			file: "good.zone", origin: "example.", wantSerial: 2024010101,
			wantCounts: map[string]int{"SOA": 1, "NS": 4, "A": 2, "AAAA": 1, "DS": 1, "TXT": 1},
		},
		{file: "good.zone", origin: "EXAMPLE", wantSerial: 2024010101,
			wantCounts: map[string]int{"SOA": 1, "NS": 4, "A": 2, "AAAA": 1, "DS": 1, "TXT": 1}},
		{file: "nosoa.zone", origin: "example.", wantErr: ErrNoSOA, wantErrRe: `^testdata/nosoa\.zone: zone example\.: `},
		{file: "twosoa.zone", origin: "example.", wantErr: ErrSeveralSOA, wantErrRe: `serials 1 and 2`},
		{file: "soabelow.zone", origin: "example.", wantErr: ErrSOANotAtOrigin, wantErrRe: `owner sub\.example\.`},
		{file: "doubled.zone", origin: "example.", wantErr: ErrSOANotAtOrigin, wantErrRe: `owner example\.example\.`},
		{file: "syntax.zone", origin: "example.", wantErrRe: `^testdata/syntax\.zone:4:\d+: bad A A: "192\.0\.2\.300"$`},
		{file: "include.zone", origin: "example.", wantErrRe: `^testdata/include\.zone:4:\d+: .*\$INCLUDE`},
		{file: "good.zone", origin: "", wantErrRe: `origin is empty`},
		{file: "missing.zone", origin: "example.", wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.origin, func(t *testing.T) {
			z, err := ParseFile(filepath.Join("testdata", tt.file), tt.origin)
			if tt.wantErr != nil || tt.wantErrRe != "" {
				if err == nil {
					t.Fatalf("ParseFile: got zone with serial %d, want error", z.Serial)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %q is not %v", err, tt.wantErr)
				}
				if tt.wantErrRe != "" && !regexp.MustCompile(tt.wantErrRe).MatchString(err.Error()) {
					t.Errorf("error %q does not match %s", err, tt.wantErrRe)
				}
				if strings.Contains(err.Error(), "root:") {
					t.Errorf("error quotes an included file: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			if z.Origin != "example." || z.Serial != tt.wantSerial {
				t.Errorf("origin %q serial %d, want example. %d", z.Origin, z.Serial, tt.wantSerial)
			}
			if _, ok := z.RR(0).(*dns.SOA); !ok {
				t.Errorf("first record is %s, want SOA", z.RR(0))
			}
			if len(z.Counts) != len(tt.wantCounts) {
				t.Errorf("counts %v, want %v", z.Counts, tt.wantCounts)
			}
			total := 0
			for typ, n := range tt.wantCounts {
				total += n
				if z.Counts[typ] != n {
					t.Errorf("count %s = %d, want %d", typ, z.Counts[typ], n)
				}
			}
			if z.Len() != total {
				t.Errorf("Len() = %d, want %d", z.Len(), total)
			}
			if b, err := hex.DecodeString(z.Digest); err != nil || len(b) != 32 {
				t.Errorf("digest %q is not hex sha256", z.Digest)
			}
		})
	}
}

func mustRRs(t *testing.T, text ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, s := range text {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("NewRR(%q): %v", s, err)
		}
		out = append(out, rr)
	}
	return out
}

func TestDigest(t *testing.T) {
	const soa = "example. 3600 IN SOA ns1.example. hostmaster.example. 7 3600 900 604800 3600"
	base := []string{soa, "example. 86400 IN NS ns1.example.", "a.example. 86400 IN NS ns.a.example.", "ns.a.example. 3600 IN A 192.0.2.1", `example. 3600 IN TXT "Hello"`}
	ref, err := FromRecords("example.", mustRRs(t, base...))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rrs  []string
		same bool
	}{
		{"reordered", []string{base[3], base[1], base[4], base[0], base[2]}, true},
		{"owner case", []string{base[0], "EXAMPLE. 86400 IN NS ns1.example.", base[2], "NS.A.Example. 3600 IN A 192.0.2.1", base[4]}, true},
		{"duplicate", append(append([]string{}, base...), base[2]), true},
		{"duplicate SOA", append(append([]string{}, base...), soa), true},
		{"ttl changed", []string{base[0], base[1], base[2], "ns.a.example. 7200 IN A 192.0.2.1", base[4]}, false},
		{"address changed", []string{base[0], base[1], base[2], "ns.a.example. 3600 IN A 192.0.2.2", base[4]}, false},
		{"TXT case", []string{base[0], base[1], base[2], base[3], `example. 3600 IN TXT "hello"`}, false},
		{"record removed", base[:4], false},
		// same serial, different content: the case the digest exists for.
		{"same serial, extra delegation", append(append([]string{}, base...), "b.example. 86400 IN NS ns.b.net."), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, err := FromRecords("example.", mustRRs(t, tt.rrs...))
			if err != nil {
				t.Fatal(err)
			}
			if got := z.Digest == ref.Digest; got != tt.same {
				t.Errorf("digest equal = %v, want %v", got, tt.same)
			}
			if z.Serial != 7 {
				t.Errorf("serial %d, want 7", z.Serial)
			}
			if _, ok := z.RR(0).(*dns.SOA); !ok {
				t.Errorf("first record %s, want the SOA", z.RR(0))
			}
		})
	}
	if ref.Len() != 5 || ref.Counts["NS"] != 2 {
		t.Errorf("ref: len %d counts %v", ref.Len(), ref.Counts)
	}
}

func TestSerialLess(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{1, 2, true},
		{2, 1, false},
		{5, 5, false},
		{0xFFFFFFFF, 0, true}, // wrap-around: 0 follows 2^32-1
		{0, 0xFFFFFFFF, false},
		{0, 0x7FFFFFFF, true}, // 2^31-1 ahead is still ahead
		{0x7FFFFFFF, 0, false},
		{0, 0x80000000, false}, // exactly 2^31 apart: undefined, so never "ahead"
		{0x80000000, 0, false},
		{2024010101, 2024010102, true},
		{4000000000, 100, true},
	}
	for _, tt := range tests {
		if got := SerialLess(tt.a, tt.b); got != tt.want {
			t.Errorf("SerialLess(%d, %d) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the parser: it must never panic, and
// whatever it accepts must satisfy the Zone invariants and rebuild to the
// same digest from its own records.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.zone"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("@ IN SOA a. b. 1 2 3 4 5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		z, err := Parse(bytes.NewReader(data), "fuzz.zone", "example.")
		if err != nil {
			return
		}
		soa, ok := z.RR(0).(*dns.SOA)
		if !ok || soa.Serial != z.Serial || !strings.EqualFold(soa.Hdr.Name, "example.") {
			t.Fatalf("bad first record %v for serial %d", z.RR(0), z.Serial)
		}
		if len(zoneLines(z)) != z.Len() {
			t.Fatalf("%d lines for %d records", len(zoneLines(z)), z.Len())
		}
		for i, l := range zoneLines(z) {
			if l < 1 || l > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("record %d (%v) at line %d", i, z.RR(i), l)
			}
		}
		n := 0
		for _, c := range z.Counts {
			n += c
		}
		if n != z.Len() {
			t.Fatalf("counts sum %d, records %d", n, z.Len())
		}
		again, err := FromRecords(z.Origin, z.RRs())
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		if again.Digest != z.Digest {
			t.Fatalf("rebuild digest %s != %s", again.Digest, z.Digest)
		}
		// What the store writes (every record's text) parses back to the
		// same zone.
		var text strings.Builder
		for _, rr := range z.All() {
			text.WriteString(rr.String() + "\n")
		}
		back, err := Parse(strings.NewReader(text.String()), "back.zone", z.Origin)
		if err != nil {
			t.Fatalf("the zone's own text does not parse: %v\n%s", err, text.String())
		}
		if back.Digest != z.Digest {
			t.Fatalf("the zone's own text parses to digest %s, not %s", back.Digest, z.Digest)
		}
	})
}

// Records remember the line they start on, through sorting, for gate
// reports ("file:line: ...").
func TestParseLines(t *testing.T) {
	z, err := ParseFile(filepath.Join("testdata", "lines.zone"), "example.")
	if err != nil {
		t.Fatal(err)
	}
	if z.File != filepath.Join("testdata", "lines.zone") || len(zoneLines(z)) != z.Len() {
		t.Fatalf("File %q, %d lines for %d records", z.File, len(zoneLines(z)), z.Len())
	}
	want := map[string]int{
		"example. SOA":                        5,
		"example. NS":                         8,
		"ns1.example. A":                      10,
		"alpha.example. NS ns.alpha.example.": 13,
		"alpha.example. NS ns.other.net.":     14,
		"ns.alpha.example. A":                 15,
		"txt.example. TXT":                    16,
		"gen1.example. A":                     18,
		"gen2.example. A":                     18,
		"gen3.example. A":                     18,
		"last.example. A":                     19,
		"nonl.example. A":                     20,
	}
	got := map[string]int{}
	for i, rr := range z.All() {
		key := rr.Header().Name + " " + dns.TypeToString[rr.Header().Rrtype]
		if ns, ok := rr.(*dns.NS); ok && rr.Header().Name == "alpha.example." {
			key += " " + ns.Ns
		}
		got[key] = z.Line(i)
	}
	for k, line := range want {
		if got[k] != line {
			t.Errorf("%s: line %d, want %d", k, got[k], line)
		}
	}
	if len(got) != len(want) {
		t.Errorf("records %v, want %v", got, want)
	}
	built, err := FromRecords("example.", z.RRs())
	if err != nil {
		t.Fatal(err)
	}
	if built.lines != nil || built.File != "" || built.Digest != z.Digest {
		t.Errorf("FromRecords: lines %v file %q digest equal %v; want no lines, same digest", built.lines, built.File, built.Digest == z.Digest)
	}
}

// zoneLines is every record's line.
func zoneLines(z *Zone) []int {
	out := make([]int, z.Len())
	for i := range out {
		out[i] = z.Line(i)
	}
	return out
}

// The digest is what it says it is, however it is computed: SHA-256 over
// the SHA-256 of each owner's sorted, distinct canonical texts. And the owner-name table, Type and
// Covered agree with the records themselves.
func TestDigestDefinitionAndNames(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	kinds := append([]string{},
		"d%[1]d.test. 3600 IN NS ns1.d%[1]d.test.",
		"d%[1]d IN 300 DS 1 13 2 %064[1]x",
		"ns1.d%[1]d.test. 300 A 192.0.2.%[2]d",
		"x%[2]d IN A 198.51.100.%[2]d",
		`a\\065%[2]d.test. 60 IN TXT "escaped letter"`,
		`aA%[2]d.test. 60 IN TXT "escaped letter"`,
		"D%[1]d.Test. 3600 IN NS NS1.d%[1]d.test.",
		"d%[2]d.test. 3600 IN NS ns.example.",
		"d%[2]d.test. 3600 IN RRSIG NS 13 2 3600 20261201000000 20261101000000 12345 test. AAAA",
		`a\\%[2]d.test. 60 IN TXT "odd owner"`,
		`\\200%[2]d.test. 60 IN A 192.0.2.1`,
	)
	text := randomZone(r, 3000, kinds)
	for _, size := range []int{0, 4096} {
		var (
			z   *Zone
			err error
		)
		if size == 0 {
			z, err = sequential(t, text)
		} else {
			z, _ = inPieces(t, text, size)
		}
		if err != nil || z == nil {
			t.Fatalf("parse: %v", err)
		}
		var lines []string
		for _, rr := range z.All() {
			lines = append(lines, CanonicalText(rr)+"\n")
		}
		slices.Sort(lines)
		lines = slices.Compact(lines)
		if len(lines) != z.Len() {
			t.Fatalf("%d distinct texts, %d records", len(lines), z.Len())
		}
		if want := TextDigest([]byte(strings.Join(lines, ""))); want != z.Digest {
			t.Fatalf("digest %s, TextDigest of its text %s", z.Digest, want)
		}
		// and TextDigest is what it says: per-owner hashes, hashed
		var outer []byte
		for k := range z.Names() {
			name, _, _ := z.Name(k)
			var own []string
			for _, l := range lines {
				if strings.HasPrefix(l, name+"\t") {
					own = append(own, l)
				}
			}
			h := sha256.Sum256([]byte(strings.Join(own, "")))
			outer = append(outer, h[:]...)
		}
		if sum := sha256.Sum256(outer); hex.EncodeToString(sum[:]) != z.Digest {
			t.Fatalf("digest %s, want %x", z.Digest, sum)
		}
		seen := 0
		for k := range z.Names() {
			name, start, end := z.Name(k)
			if k > 0 {
				if prev, _, _ := z.Name(k - 1); prev >= name {
					t.Fatalf("names out of order: %q then %q", prev, name)
				}
			}
			if got, ok := z.FindName(name); !ok || got != k {
				t.Fatalf("FindName(%q) = %d %v, want %d", name, got, ok, k)
			}
			for i := start; i < end; i++ {
				rr := z.RR(i)
				if NameKey(rr.Header().Name) != name {
					t.Fatalf("record %d %v listed under %q", i, rr, name)
				}
				if z.Type(i) != rr.Header().Rrtype {
					t.Fatalf("Type(%d) = %d for %v", i, z.Type(i), rr)
				}
				want := uint16(dns.TypeNone)
				if s, ok := rr.(*dns.RRSIG); ok {
					want = s.TypeCovered
				}
				if z.Covered(i) != want {
					t.Fatalf("Covered(%d) = %d for %v", i, z.Covered(i), rr)
				}
			}
			seen += end - start
		}
		if seen != z.Len()-1 {
			t.Fatalf("names own %d records besides the SOA, zone has %d", seen, z.Len()-1)
		}
		if _, ok := z.FindName(NameKey(z.Origin)); !ok {
			t.Fatalf("apex %s not among the names", z.Origin)
		}
	}
}

func TestNameKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Example.TEST.", "example.test."},
		{"a-b_c.*.test.", "a-b_c.*.test."},
		{`a\065.test.`, "aa.test."},
		{`A\066C.test`, "abc.test."},
		{`a\.b.test.`, `a\.b.test.`},
		{`\200.test.`, `\200.test.`},
	} {
		if got := NameKey(tt.in); got != tt.want {
			t.Errorf("NameKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
