package zone

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
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
			if _, ok := z.Records[0].(*dns.SOA); !ok {
				t.Errorf("first record is %s, want SOA", z.Records[0])
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
			if _, ok := z.Records[0].(*dns.SOA); !ok {
				t.Errorf("first record %s, want the SOA", z.Records[0])
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
		soa, ok := z.Records[0].(*dns.SOA)
		if !ok || soa.Serial != z.Serial || !strings.EqualFold(soa.Hdr.Name, "example.") {
			t.Fatalf("bad first record %v for serial %d", z.Records[0], z.Serial)
		}
		if len(z.Lines) != len(z.Records) {
			t.Fatalf("%d lines for %d records", len(z.Lines), len(z.Records))
		}
		for i, l := range z.Lines {
			if l < 1 || l > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("record %d (%v) at line %d", i, z.Records[i], l)
			}
		}
		n := 0
		for _, c := range z.Counts {
			n += c
		}
		if n != len(z.Records) {
			t.Fatalf("counts sum %d, records %d", n, len(z.Records))
		}
		again, err := FromRecords(z.Origin, z.Records)
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		if again.Digest != z.Digest {
			t.Fatalf("rebuild digest %s != %s", again.Digest, z.Digest)
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
	if z.File != filepath.Join("testdata", "lines.zone") || len(z.Lines) != len(z.Records) {
		t.Fatalf("File %q, %d lines for %d records", z.File, len(z.Lines), len(z.Records))
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
	for i, rr := range z.Records {
		key := rr.Header().Name + " " + dns.TypeToString[rr.Header().Rrtype]
		if ns, ok := rr.(*dns.NS); ok && rr.Header().Name == "alpha.example." {
			key += " " + ns.Ns
		}
		got[key] = z.Lines[i]
	}
	for k, line := range want {
		if got[k] != line {
			t.Errorf("%s: line %d, want %d", k, got[k], line)
		}
	}
	if len(got) != len(want) {
		t.Errorf("records %v, want %v", got, want)
	}
	built, err := FromRecords("example.", z.Records)
	if err != nil {
		t.Fatal(err)
	}
	if built.Lines != nil || built.File != "" || built.Digest != z.Digest {
		t.Errorf("FromRecords: lines %v file %q digest equal %v; want no lines, same digest", built.Lines, built.File, built.Digest == z.Digest)
	}
}
