package zonestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/zone"
)

func TestCanonicalOrigin(t *testing.T) {
	tests := []struct {
		in, canon, dir string
		wantErr        string
	}{
		{in: "test", canon: "test.", dir: "test"},
		{in: "TEST.", canon: "test.", dir: "test"},
		{in: "Example.Co.JP", canon: "example.co.jp.", dir: "example.co.jp"},
		{in: "_tcp.test.", canon: "_tcp.test.", dir: "_tcp.test"},
		{in: ".", canon: ".", dir: "root"},
		{in: "root.", wantErr: "root zone's"},
		{in: "", wantErr: "empty"},
		{in: `a\/b.test.`, wantErr: "not stored"},
		{in: `a\.b.test.`, wantErr: "not stored"},
		{in: "a..test.", wantErr: "not a domain name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			canon, dir, err := canonicalOrigin(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("canonicalOrigin(%q) = %q, %q, %v; want error with %q", tt.in, canon, dir, err, tt.wantErr)
				}
				return
			}
			if err != nil || canon != tt.canon || dir != tt.dir {
				t.Fatalf("canonicalOrigin(%q) = %q, %q, %v; want %q, %q", tt.in, canon, dir, err, tt.canon, tt.dir)
			}
		})
	}
}

// TestPutLayout checks what Put leaves on disk and in the manifest: the
// layout other tools (and an operator with ls) rely on.
func TestPutLayout(t *testing.T) {
	s := newStore(t)
	z := fixture(t, "v1.zone")
	rep := &gates.Report{Origin: z.Origin, Serial: z.Serial, Digest: z.Digest, At: t0, Pass: true,
		Results: []gates.Result{{Gate: gates.GateBudget, Status: gates.StatusPass, Total: 0}}}
	in := accepted(t0)
	in.Report = rep
	in.Origin, in.Serial, in.Records = "wrong.", 99, -1 // overwritten from the zone
	m := mustPut(t, s, z, in)

	want := Manifest{
		Origin: "test.", Serial: 2024010101, Digest: z.Digest, Records: 13,
		Counts:      map[string]int{"SOA": 1, "NS": 8, "A": 2, "AAAA": 1, "DS": 1},
		Delegations: 3, Report: rep,
		AcceptedAt: t0, AcceptedBy: "agent tokyo", Source: "file:test.zone",
	}
	if diff := manifestDiff(m, want); diff != "" {
		t.Errorf("Put returned %s", diff)
	}
	got, err := s.Get("TEST", 2024010101)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := manifestDiff(got, want); diff != "" {
		t.Errorf("Get returned %s", diff)
	}
	if got.Report == nil || len(got.Report.Results) != 1 || got.Report.Results[0].Gate != gates.GateBudget || !got.Report.Pass {
		t.Errorf("gate report did not round-trip: %+v", got.Report)
	}

	wantFiles := []string{
		"lock",
		fmt.Sprintf("manifests/test/2024010101-%s.json", z.Digest[:12]),
		fmt.Sprintf("objects/%s.zone", z.Digest),
	}
	if f := files(t, s.Dir()); !slices.Equal(f, wantFiles) {
		t.Errorf("store files %q, want %q", f, wantFiles)
	}
	obj := filepath.Join(s.Dir(), wantFiles[2])
	fi, err := os.Stat(obj)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("object mode %v, want 0644", fi.Mode().Perm())
	}
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	if sum := zone.TextDigest(b); sum != z.Digest {
		t.Errorf("object bytes hash to %s, want the zone digest %s", sum, z.Digest)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 13 || !slices.IsSorted(lines) {
		t.Errorf("object has %d lines (sorted: %v), want 13 sorted lines", len(lines), slices.IsSorted(lines))
	}
	for _, l := range lines {
		if owner, _, _ := strings.Cut(l, "\t"); !dns.IsFqdn(owner) || owner != strings.ToLower(owner) {
			t.Errorf("object line %q: owner is not absolute lower case", l)
		}
	}
}

// manifestDiff describes how got differs from want, "" if not at all.
func manifestDiff(got, want Manifest) string {
	var d []string
	add := func(f string, g, w any) { d = append(d, fmt.Sprintf("%s %v, want %v", f, g, w)) }
	if got.Origin != want.Origin {
		add("origin", got.Origin, want.Origin)
	}
	if got.Serial != want.Serial {
		add("serial", got.Serial, want.Serial)
	}
	if got.Digest != want.Digest {
		add("digest", got.Digest, want.Digest)
	}
	if got.Records != want.Records {
		add("records", got.Records, want.Records)
	}
	if fmt.Sprint(got.Counts) != fmt.Sprint(want.Counts) {
		add("counts", got.Counts, want.Counts)
	}
	if got.Delegations != want.Delegations {
		add("delegations", got.Delegations, want.Delegations)
	}
	if (got.Report == nil) != (want.Report == nil) {
		add("report", got.Report, want.Report)
	}
	if !got.AcceptedAt.Equal(want.AcceptedAt) || got.AcceptedBy != want.AcceptedBy || got.Source != want.Source {
		add("accepted", []any{got.AcceptedAt, got.AcceptedBy, got.Source}, []any{want.AcceptedAt, want.AcceptedBy, want.Source})
	}
	if got.Published != want.Published || !got.PublishedAt.Equal(want.PublishedAt) {
		add("published", []any{got.Published, got.PublishedAt}, []any{want.Published, want.PublishedAt})
	}
	return strings.Join(d, "; ")
}

func TestPutGetListLatest(t *testing.T) {
	type put struct {
		serial uint32
		at     time.Duration // after t0
	}
	tests := []struct {
		name       string
		origin     string
		dir        string // under manifests/
		puts       []put
		wantList   []uint32
		wantLatest uint32
	}{
		{name: "in order", origin: "test.", dir: "test",
			puts:     []put{{2026030101, 0}, {2026030102, time.Hour}, {2026030103, 2 * time.Hour}},
			wantList: []uint32{2026030101, 2026030102, 2026030103}, wantLatest: 2026030103},
		{name: "put out of order", origin: "test.", dir: "test",
			puts:     []put{{3, 2 * time.Hour}, {1, 0}, {2, time.Hour}},
			wantList: []uint32{1, 2, 3}, wantLatest: 3},
		{name: "acceptance time before serial", origin: "test.", dir: "test",
			// An operator re-accepted an older serial after a newer one
			// (a rollback): the later acceptance is the latest.
			puts:     []put{{10, 0}, {9, time.Hour}},
			wantList: []uint32{10, 9}, wantLatest: 9},
		{name: "same instant, serial wraps", origin: "test.", dir: "test",
			// RFC 1982: 1 follows 4294967295; a plain < would say latest
			// is 4294967295.
			puts:     []put{{1, 0}, {4294967295, 0}},
			wantList: []uint32{4294967295, 1}, wantLatest: 1},
		{name: "root zone", origin: ".", dir: "root",
			puts:     []put{{1, 0}, {2, time.Minute}},
			wantList: []uint32{1, 2}, wantLatest: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			// Another origin in the same store must not leak into lists.
			mustPut(t, s, gen(t, "other.", 77, 30), accepted(t0.Add(24*time.Hour)))
			for _, p := range tt.puts {
				z := gen(t, tt.origin, p.serial, 30)
				m := mustPut(t, s, z, accepted(t0.Add(p.at)))
				got, err := s.Get(tt.origin, p.serial)
				if err != nil {
					t.Fatalf("Get %d: %v", p.serial, err)
				}
				if got.Digest != z.Digest || got.Serial != p.serial || got.Digest != m.Digest {
					t.Errorf("Get %d: digest %s serial %d, want %s", p.serial, got.Digest, got.Serial, z.Digest)
				}
			}
			ms, err := s.List(tt.origin)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if n := len(files(t, filepath.Join(s.Dir(), "manifests", tt.dir))); n != len(tt.puts) {
				t.Errorf("manifests/%s holds %d files, want %d", tt.dir, n, len(tt.puts))
			}
			if got := serials(ms); !slices.Equal(got, tt.wantList) {
				t.Errorf("List serials %v, want %v", got, tt.wantList)
			}
			latest, err := s.Latest(tt.origin)
			if err != nil || latest.Serial != tt.wantLatest {
				t.Errorf("Latest = %d, %v; want %d", latest.Serial, err, tt.wantLatest)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	s := newStore(t)
	mustPut(t, s, gen(t, "test.", 5, 20), accepted(t0))
	tests := []struct {
		name string
		call func() error
	}{
		{"get unknown serial", func() error { _, err := s.Get("test.", 6); return err }},
		{"get unknown origin", func() error { _, err := s.Get("nothing.", 5); return err }},
		{"latest unknown origin", func() error { _, err := s.Latest("nothing."); return err }},
		{"latest published, none published", func() error { _, err := s.LatestPublished("test."); return err }},
		{"published as of, none published", func() error { _, err := s.PublishedAsOf("test.", t0.Add(time.Hour)); return err }},
		{"mark unknown serial", func() error { return s.MarkPublished("test.", 6, t0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrNotFound) {
				t.Fatalf("error %v, want ErrNotFound", err)
			}
		})
	}
	if ms, err := s.List("nothing."); err != nil || len(ms) != 0 {
		t.Errorf("List of an unknown origin = %v, %v; want empty", ms, err)
	}
}

func TestPutIdempotent(t *testing.T) {
	s := newStore(t)
	z := gen(t, "test.", 2026030101, 200)
	first := mustPut(t, s, z, accepted(t0))
	before := files(t, s.Dir())

	again := accepted(t0.Add(time.Hour))
	again.AcceptedBy = "operator alice"
	second := mustPut(t, s, z, again)
	if diff := manifestDiff(second, first); diff != "" {
		t.Errorf("second Put returned a different manifest: %s", diff)
	}
	if after := files(t, s.Dir()); !slices.Equal(after, before) {
		t.Errorf("second Put changed the store: %q, was %q", after, before)
	}
	ms, err := s.List("test.")
	if err != nil || len(ms) != 1 || !ms[0].AcceptedAt.Equal(t0) {
		t.Errorf("List after two Puts = %v, %v; want the first one only", ms, err)
	}

	// A repeated Put repairs a damaged object: the version must be
	// restorable after Put returns, whatever happened to the disk.
	obj := s.objectPath(z.Digest)
	if err := os.WriteFile(obj, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, z, accepted(t0))
	if _, err := s.Load(first); err != nil {
		t.Errorf("Load after the repairing Put: %v", err)
	}
}

func TestPutRefuses(t *testing.T) {
	base := func(t *testing.T) (*Store, Manifest) {
		s := newStore(t)
		return s, mustPut(t, s, gen(t, "test.", 7, 50), accepted(t0))
	}
	tests := []struct {
		name    string
		zone    func(t *testing.T) (zz any)
		m       func(m Manifest) Manifest
		wantErr error
		wantRe  string
	}{
		{name: "same serial, different content",
			wantErr: ErrSerialReused, wantRe: `zone test\. serial 7: same serial, different content: stored digest [0-9a-f]{64}, offered digest [0-9a-f]{64}`},
		{name: "no acceptance time", m: func(m Manifest) Manifest { m.AcceptedAt = time.Time{}; return m },
			wantRe: `serial 8: manifest has no acceptance time`},
		{name: "nobody accepted it", m: func(m Manifest) Manifest { m.AcceptedBy = " "; return m },
			wantRe: `serial 8: manifest does not say who accepted it`},
		{name: "published without time", m: func(m Manifest) Manifest { m.Published = true; return m },
			wantRe: `serial 8: manifest is published but has no publication time`},
		{name: "report of another version",
			m: func(m Manifest) Manifest {
				m.Report = &gates.Report{Origin: "test.", Serial: 7, Digest: strings.Repeat("ab", 32)}
				return m
			},
			wantRe: `serial 8: gate report is for serial 7 digest (ab){32}, not this version's`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, stored := base(t)
			before := files(t, s.Dir())
			z := gen(t, "test.", 8, 50)
			if errors.Is(tt.wantErr, ErrSerialReused) {
				z = gen(t, "test.", 7, 60)
			}
			m := accepted(t0.Add(time.Hour))
			if tt.m != nil {
				m = tt.m(m)
			}
			_, err := s.Put(z, m)
			if err == nil {
				t.Fatal("Put succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q is not %v", err, tt.wantErr)
			}
			if !regexp.MustCompile(tt.wantRe).MatchString(err.Error()) {
				t.Errorf("error %q does not match %s", err, tt.wantRe)
			}
			if errors.Is(tt.wantErr, ErrSerialReused) && (!strings.Contains(err.Error(), stored.Digest) || !strings.Contains(err.Error(), z.Digest)) {
				t.Errorf("error %q does not name both digests", err)
			}
			if after := files(t, s.Dir()); !slices.Equal(after, before) {
				t.Errorf("refused Put changed the store: %q, was %q", after, before)
			}
		})
	}
}

// TestPutModifiedZone: a zone whose records no longer match its digest
// (changed after it was built) must not be stored under that digest, or
// the digest would lie. The records of a zone.Zone cannot be changed from
// outside, so the digest is the part made to disagree: v1's records under
// v2's digest.
func TestPutModifiedZone(t *testing.T) {
	s := newStore(t)
	z := fixture(t, "v1.zone")
	z.Digest = fixture(t, "v2.zone").Digest
	_, err := s.Put(z, accepted(t0))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "modified after it was built") {
		t.Fatalf("Put of a modified zone: %v, want ErrCorrupt", err)
	}
	if f := files(t, s.Dir()); len(f) != 0 {
		t.Errorf("refused Put left files %q", f)
	}
}

// TestConcurrentPut: writers in separate Stores on one directory (as the
// agent and an operator's CLI would be) race to store different content
// under one serial; exactly one wins.
func TestConcurrentPut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "zones")
	const writers = 6
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      int
		reused  int
		failure []error
	)
	for i := range writers {
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		z := gen(t, "test.", 42, 100+10*i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Put(z, accepted(t0))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrSerialReused):
				reused++
			default:
				failure = append(failure, err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || reused != writers-1 || len(failure) > 0 {
		t.Fatalf("%d stored, %d refused as reused, other errors %v; want 1 and %d", ok, reused, failure, writers-1)
	}
	s, _ := Open(dir)
	if _, err := s.Get("test.", 42); err != nil {
		t.Errorf("Get after the race: %v", err)
	}
}

func TestMarkPublished(t *testing.T) {
	s := newStore(t)
	for i, serial := range []uint32{1, 2, 3} {
		mustPut(t, s, gen(t, "test.", serial, 30), accepted(t0.Add(time.Duration(i)*time.Hour)))
	}
	t1, t2, t3 := t0.Add(10*time.Hour), t0.Add(20*time.Hour), t0.Add(30*time.Hour)
	steps := []struct {
		serial        uint32
		at            time.Time
		wantLatestPub uint32
	}{
		{1, t1, 1},
		{2, t2, 2},
		// rollback: version 1 is re-activated
		{1, t3, 1},
	}
	for _, st := range steps {
		if err := s.MarkPublished("test.", st.serial, st.at); err != nil {
			t.Fatalf("MarkPublished %d: %v", st.serial, err)
		}
		m, err := s.LatestPublished("test.")
		if err != nil || m.Serial != st.wantLatestPub || !m.Published || !m.PublishedAt.Equal(st.at) {
			t.Fatalf("after publishing %d at %s: LatestPublished = serial %d published %v at %s, %v; want %d at %s",
				st.serial, st.at, m.Serial, m.Published, m.PublishedAt, err, st.wantLatestPub, st.at)
		}
	}
	m1, err := s.Get("test.", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(m1.Publications) != 2 || !m1.Publications[0].Equal(t1) || !m1.Publications[1].Equal(t3) {
		t.Errorf("publications of 1: %v, want [%s %s]", m1.Publications, t1, t3)
	}
	if m3, _ := s.Get("test.", 3); m3.Published {
		t.Errorf("serial 3 is published, never marked")
	}
	if l, _ := s.Latest("test."); l.Serial != 3 {
		t.Errorf("Latest = %d after publications, want 3 (latest accepted)", l.Serial)
	}

	asOf := []struct {
		at   time.Time
		want uint32 // 0: nothing published yet
	}{
		{t0, 0},
		{t1.Add(-time.Nanosecond), 0},
		{t1, 1},
		{t2.Add(-time.Minute), 1},
		{t2, 2},
		{t3.Add(-time.Minute), 2},
		{t3, 1},
		{t3.Add(time.Hour), 1},
	}
	for _, q := range asOf {
		m, err := s.PublishedAsOf("test.", q.at)
		if q.want == 0 {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("PublishedAsOf(%s) = %d, %v; want ErrNotFound", q.at, m.Serial, err)
			}
			continue
		}
		if err != nil || m.Serial != q.want {
			t.Errorf("PublishedAsOf(%s) = %d, %v; want %d", q.at, m.Serial, err, q.want)
		}
	}
	if err := s.MarkPublished("test.", 2, time.Time{}); err == nil {
		t.Errorf("MarkPublished with a zero time succeeded")
	}
}

// TestPutPublished: a version may be stored already published (a site
// importing what it serves).
func TestPutPublished(t *testing.T) {
	s := newStore(t)
	m := accepted(t0)
	m.Published, m.PublishedAt = true, t0.Add(time.Minute)
	mustPut(t, s, gen(t, "test.", 1, 20), m)
	got, err := s.LatestPublished("test.")
	if err != nil || got.Serial != 1 || len(got.Publications) != 1 || !got.Publications[0].Equal(m.PublishedAt) {
		t.Fatalf("LatestPublished = %+v, %v; want serial 1 published at %s", got, err, m.PublishedAt)
	}
}

func TestCorruptManifest(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string) // path: the manifest
		wantRe string
	}{
		{"not json", func(t *testing.T, p string) { write(t, p, "{\"format\": 1, \"orig") }, `unexpected EOF`},
		{"empty", func(t *testing.T, p string) { write(t, p, "") }, `EOF`},
		{"unknown format", func(t *testing.T, p string) { edit(t, p, `"format": 1`, `"format": 2`) }, `format 2, this regdr reads 1`},
		{"serial edited", func(t *testing.T, p string) { edit(t, p, `"serial": 7`, `"serial": 8`) }, `holds serial 8`},
		{"origin edited", func(t *testing.T, p string) { edit(t, p, `"origin": "test."`, `"origin": "other."`) }, `origin "other\." in the directory of "test\."`},
		{"unknown field", func(t *testing.T, p string) { edit(t, p, `"format": 1`, `"format": 1, "extra": true`) }, `unknown field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			m := mustPut(t, s, gen(t, "test.", 7, 20), accepted(t0))
			path := filepath.Join(s.Dir(), "manifests", "test", manifestName(m.Serial, m.Digest))
			tt.damage(t, path)
			for what, call := range map[string]func() error{
				"Get":    func() error { _, err := s.Get("test.", 7); return err },
				"List":   func() error { _, err := s.List("test."); return err },
				"Latest": func() error { _, err := s.Latest("test."); return err },
				"Prune":  func() error { _, err := s.Prune("test.", 0); return err },
			} {
				err := call()
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !regexp.MustCompile(tt.wantRe).MatchString(err.Error()) {
					t.Errorf("%s: error %v, want ErrCorrupt naming %s and matching %s", what, err, path, tt.wantRe)
				}
			}
			if _, err := os.Stat(s.objectPath(m.Digest)); err != nil {
				t.Errorf("Prune removed an object while a manifest was unreadable: %v", err)
			}
		})
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q:\n%s", path, old, b)
	}
	write(t, path, strings.Replace(string(b), old, new, 1))
}
