package gates

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// fixedNow is the validation instant of the committed signed fixtures:
// their signatures run from 2026-01-01 to 2026-03-01.
var fixedNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// load parses testdata/<path> for origin.
func load(t testing.TB, path, origin string) *zone.Zone {
	t.Helper()
	z, err := zone.ParseFile(filepath.Join("testdata", path), origin)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return z
}

// loadAbs parses the zone file at path.
func loadAbs(t testing.TB, path, origin string) *zone.Zone {
	t.Helper()
	z, err := zone.ParseFile(path, origin)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return z
}

// parse builds a zone from text (one RR per line, absolute names).
func parse(t testing.TB, origin string, lines ...string) *zone.Zone {
	t.Helper()
	z, err := zone.Parse(strings.NewReader(strings.Join(lines, "\n")+"\n"), "inline", origin)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return z
}

// runOne runs a single gate through Run (so the Index is built as in
// production) and returns its result.
func runOne(t testing.TB, g Gate, in *Input) Result {
	t.Helper()
	rep := Run(context.Background(), []Gate{g}, in)
	if len(rep.Results) != 1 {
		t.Fatalf("want 1 result, got %+v", rep.Results)
	}
	return rep.Results[0]
}

// kinds returns the distinct finding kinds of r, sorted.
func kinds(r Result) []string {
	var out []string
	for _, f := range r.Findings {
		if !slices.Contains(out, f.Kind) {
			out = append(out, f.Kind)
		}
	}
	slices.Sort(out)
	return out
}

// names returns the distinct finding names of kind (all kinds if ""), sorted.
func names(r Result, kind string) []string {
	var out []string
	for _, f := range r.Findings {
		if (kind == "" || f.Kind == kind) && !slices.Contains(out, f.Name) {
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return out
}

// checkResult asserts status, finding kinds and (when given) names.
func checkResult(t *testing.T, r Result, status string, wantKinds []string, wantNames []string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status = %s (%s), want %s; findings: %v", r.Status, r.Reason, status, r.Findings)
	}
	if status != StatusPass && r.Reason == "" {
		t.Errorf("a %s result must say why", status)
	}
	if got := kinds(r); !slices.Equal(got, sorted(wantKinds)) {
		t.Errorf("finding kinds = %v, want %v; findings: %v", got, wantKinds, r.Findings)
	}
	if wantNames != nil {
		if got := names(r, ""); !slices.Equal(got, sorted(wantNames)) {
			t.Errorf("finding names = %v, want %v", got, wantNames)
		}
	}
	if r.Total < len(r.Findings) {
		t.Errorf("total %d < %d findings listed", r.Total, len(r.Findings))
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		return nil
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func readTestdata(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseText parses zone text as if it came from file.
func parseText(t testing.TB, text, file, origin string) *zone.Zone {
	t.Helper()
	z, err := zone.Parse(strings.NewReader(text), file, origin)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return z
}

// rebuild makes a zone from records (no file positions).
func rebuild(t testing.TB, origin string, rrs []dns.RR) *zone.Zone {
	t.Helper()
	z, err := zone.FromRecords(origin, rrs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// sections reads testdata/<file>, a list of zones each introduced by a
// "-- name --" line, and returns each zone's text padded with blank lines
// so that line numbers in findings are those of the combined file.
func sections(t testing.TB, file string) map[string]string {
	t.Helper()
	text := readTestdata(t, file)
	out := map[string]string{}
	name := ""
	var b strings.Builder
	flush := func() {
		if name != "" {
			out[name] = b.String()
		}
	}
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			flush()
			name = strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --")
			b.Reset()
			b.WriteString(strings.Repeat("\n", i+1))
			continue
		}
		b.WriteString(line + "\n")
	}
	flush()
	return out
}

// sectionZone parses one section of testdata/<file>.
func sectionZone(t testing.TB, secs map[string]string, file, name, origin string) *zone.Zone {
	t.Helper()
	text, ok := secs[name]
	if !ok {
		t.Fatalf("testdata/%s has no section %q", file, name)
	}
	return parseText(t, text, filepath.Join("testdata", file), origin)
}
