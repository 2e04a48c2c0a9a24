package zone

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sequential is the reference: Parse on one core.
func sequential(t *testing.T, text string) (*Zone, error) {
	t.Helper()
	return Parse(strings.NewReader(text), "test.zone", "test.")
}

// inPieces parses text cut into chunks of about size bytes; ok false
// means it declined (the caller parses sequentially).
func inPieces(t *testing.T, text string, size int) (*Zone, bool) {
	t.Helper()
	pieces, ok, err := parseParallel(strings.NewReader(text), "test.zone", "test.", 3, size)
	if err != nil {
		t.Fatalf("parseParallel: %v", err)
	}
	if !ok {
		return nil, false
	}
	z, err := build("test.", pieces...)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	z.File = "test.zone"
	return z, true
}

// Record lines of every shape a zone file may hold, including those a
// cut could break: no owner, no TTL, parentheses over several lines,
// parentheses and semicolons inside quotes and comments, escapes.
var lineKinds = []string{
	"d%[1]d.test. 3600 IN NS ns1.d%[1]d.test.",
	"d%[1]d 3600 IN NS ns.example.",
	"d%[1]d IN 300 DS 1 13 2 %064[1]x",
	"ns1.d%[1]d.test. 300 A 192.0.2.%[2]d",
	"   300 IN AAAA 2001:db8::%[2]x",
	"\tIN TXT \"continued owner %[1]d\"",
	"t%[1]d 60 IN TXT \"paren ( inside\" \"semi ; colon\"",
	"t%[1]d 60 IN TXT \"escaped \\\" quote (\" ; comment with ( paren",
	"m%[1]d 600 IN MX ( 10\n  mail.example. )",
	"m%[1]d 600 IN MX (\n10\nmail%[1]d.example. ; comment )\n)",
	"@ 300 IN TXT \"apex %[1]d\"",
	"x%[1]d IN A 198.51.100.%[2]d",
	"; a comment line %[1]d (",
	"",
}

func randomZone(r *rand.Rand, n int, kinds []string) string {
	var b strings.Builder
	b.WriteString("test. 3600 IN SOA ns1.test. hostmaster.test. ( 1 1800 900\n  604800 3600 )\n")
	for i := range n {
		fmt.Fprintf(&b, kinds[r.IntN(len(kinds))]+"\n", i, i%250+1)
	}
	return b.String()
}

func sameZone(t *testing.T, what string, got, want *Zone) {
	t.Helper()
	if got.Digest != want.Digest || got.Serial != want.Serial || !slices.Equal(zoneLines(got), zoneLines(want)) || got.File != want.File {
		t.Fatalf("%s: parsed in pieces: digest %s, %d records, lines %v...; sequential: %s, %d records, lines %v...",
			what, got.Digest, got.Len(), head(zoneLines(got)), want.Digest, want.Len(), head(zoneLines(want)))
	}
}

func head(l []int) []int { return l[:min(len(l), 12)] }

// Whatever the cuts, a parse in pieces is the sequential parse, or it
// declines; on generator-shaped files it does not decline.
func TestParseInPiecesMatchesSequential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	accepted, declined, mixedCut := 0, 0, 0
	for round := range 300 {
		kinds := lineKinds[:4] // generator-shaped: owner and TTL on every line
		if round%3 != 0 {
			// a random mix of the other shapes
			for _, k := range lineKinds[4:] {
				if r.IntN(2) == 0 {
					kinds = append(slices.Clone(kinds), k)
				}
			}
		}
		text := randomZone(r, 50+r.IntN(400), kinds)
		want, werr := sequential(t, text)
		for _, size := range []int{40, 333, 2000, 1 << 20} {
			got, ok := inPieces(t, text, size)
			switch {
			case !ok:
				declined++
				if round%3 == 0 && werr == nil && size > 300 {
					t.Fatalf("round %d: declined a generator-shaped file (chunk size %d)", round, size)
				}
			case werr != nil:
				t.Fatalf("round %d: parsed in pieces a file the sequential parse refuses (%v)", round, werr)
			default:
				accepted++
				if round%3 != 0 && size < 1<<20 {
					mixedCut++
				}
				sameZone(t, fmt.Sprintf("round %d, chunk size %d", round, size), got, want)
			}
		}
	}
	if accepted < 300 || declined < 100 || mixedCut < 50 {
		t.Errorf("%d parses in pieces accepted (%d of mixed files cut in pieces), %d declined: the test did not exercise all cases",
			accepted, mixedCut, declined)
	}
}

func TestParseInPiecesDeclines(t *testing.T) {
	gen := randomZone(rand.New(rand.NewPCG(3, 4)), 300, lineKinds[:4])
	tests := []struct {
		name string
		text string
	}{
		{"$TTL", "$TTL 300\n" + gen},
		{"$ORIGIN later", gen + "$ORIGIN sub.test.\nx 300 IN A 192.0.2.1\n" + gen},
		{"TTL inherited across a cut", gen + strings.Repeat("y IN A 192.0.2.9\n", 200)},
		{"syntax error", gen + "bad 300 IN A not-an-address\n" + gen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := inPieces(t, tt.text, 200); ok {
				t.Errorf("parsed in pieces")
			}
		})
	}
}

// ParseFile takes the parallel path on a large file and gives what Parse
// gives; and its errors are the sequential ones, with file and line.
func TestParseFileLarge(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("test. 3600 IN SOA ns1.test. hostmaster.test. 7 1800 900 604800 3600\ntest. 3600 IN NS ns1.test.\n")
	for i := 0; b.Len() < parallelMinSize+3*parallelChunk; i++ {
		fmt.Fprintf(&b, "d%07d.test. 86400 IN NS ns%d.example.\nd%07d.test. 3600 IN DS %d 13 2 %064x\n", i, i%7, i, i%65536, i)
	}
	path := filepath.Join(t.TempDir(), "big.zone")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := useParallel(int64(b.Len())); !ok {
		t.Logf("GOMAXPROCS 1: ParseFile parses sequentially; comparing anyway")
	}
	if _, ok, err := parseFileParallel(path, "test.", 2); !ok || err != nil {
		t.Fatalf("parseFileParallel declined a generator-shaped file: %v", err)
	}
	got, err := ParseFile(path, "test.")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(bytes.NewReader(b.Bytes()), path, "test.")
	if err != nil {
		t.Fatal(err)
	}
	sameZone(t, "large file", got, want)
	if got.Len() < 80000 {
		t.Errorf("%d records", got.Len())
	}

	b.WriteString("d9999999.test. 300 IN A 192.0.2.300\n")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseFile(path, "test.")
	lines := bytes.Count(b.Bytes(), []byte{'\n'})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%s:%d:", path, lines)) {
		t.Errorf("error %v, want one at %s:%d", err, path, lines)
	}
}

// Sorting in parts and merging sorts.
func TestParallelSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base := make([]string, 100000)
	for i := range base {
		base[i] = fmt.Sprintf("name%d", r.IntN(5000))
	}
	want := slices.Clone(base)
	slices.Sort(want)
	for _, parts := range []int{1, 2, 3, 4, 7, 8} {
		got := slices.Clone(base)
		parallelSort(got, parts, strings.Compare)
		if !slices.Equal(got, want) {
			t.Fatalf("%d parts: not sorted", parts)
		}
	}
}

func TestParseBytesLarge(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("test.\t3600\tIN\tSOA\tns1.test. hostmaster.test. 7 1800 900 604800 3600\n")
	for i := 0; b.Len() < parallelMinSize+2*parallelChunk; i++ {
		fmt.Fprintf(&b, "d%07d.test.\t86400\tIN\tNS\tns%d.example.\n", i, i%7)
	}
	got, err := ParseBytes(b.Bytes(), "obj", "test.")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(bytes.NewReader(b.Bytes()), "obj", "test.")
	if err != nil {
		t.Fatal(err)
	}
	sameZone(t, "ParseBytes", got, want)
	if _, ok, err := parseParallel(bytes.NewReader(b.Bytes()), "obj", "test.", 2, parallelChunk); !ok || err != nil {
		t.Errorf("a stored version's text was not parsed in pieces: %v", err)
	}
}

// FuzzParseInPieces: whatever the text and wherever the cuts fall, a parse
// in pieces that does not decline is exactly the sequential parse.
func FuzzParseInPieces(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.zone"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(30))
	}
	f.Add([]byte(randomZone(rand.New(rand.NewPCG(7, 8)), 40, lineKinds)), uint8(50))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		seq, serr := Parse(bytes.NewReader(data), "test.zone", "test.")
		pieces, ok, err := parseParallel(bytes.NewReader(data), "test.zone", "test.", 3, int(size)+8)
		if err != nil || !ok {
			return
		}
		got, berr := build("test.", pieces...)
		switch {
		case serr != nil && berr == nil:
			t.Fatalf("parsed in pieces, the sequential parse says %v", serr)
		case serr != nil || berr != nil:
			return
		}
		got.File = "test.zone"
		sameZone(t, "fuzz", got, seq)
	})
}
