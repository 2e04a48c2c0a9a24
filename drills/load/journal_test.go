package load

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadJournal(t *testing.T) {
	tests := []struct {
		file     string
		wantIDs  []int64
		wantTorn string
		wantErr  string
	}{
		{file: "clean.jsonl", wantIDs: []int64{7, 9, 10}},
		{file: "empty.jsonl"},
		{file: "torn.jsonl", wantIDs: []int64{7, 9, 10}, wantTorn: `{"id":11,"op":"register","dom`},
		// Cut exactly before its newline: the record is whole, keep it.
		{file: "no-final-newline.jsonl", wantIDs: []int64{7, 9, 10, 12}},
		{file: "corrupt-middle.jsonl", wantErr: "line 2"},
		{file: "corrupt-last-complete.jsonl", wantErr: "line 4"},
		{file: "missing.jsonl", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			j, err := ReadJournalFile(filepath.Join("testdata", tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, r := range j.Records {
				ids = append(ids, r.ID)
			}
			if !equal(ids, tt.wantIDs) {
				t.Fatalf("ids = %v, want %v", ids, tt.wantIDs)
			}
			if j.TornTail != tt.wantTorn {
				t.Fatalf("torn tail = %q, want %q", j.TornTail, tt.wantTorn)
			}
			recs, err := ReadJournal(filepath.Join("testdata", tt.file))
			if err != nil || len(recs) != len(j.Records) {
				t.Fatalf("ReadJournal = %d records, %v", len(recs), err)
			}
		})
	}
	// The fields of the clean file, to pin the format.
	recs, err := ReadJournal("testdata/clean.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	want := Record{ID: 7, Op: "register", Domain: "ldx-1", At: time.Date(2026, 11, 24, 14, 0, 0, 1, time.UTC)}
	if got := recs[0]; !got.At.Equal(want.At) || got.ID != want.ID || got.Op != want.Op || got.Domain != want.Domain || !got.Acked() {
		t.Fatalf("record 0 = %+v, want %+v", got, want)
	}
	if u := recs[2]; u.Acked() || !u.Uncertain {
		t.Fatalf("record 2 = %+v, want uncertain", u)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// syncBuffer counts syncs.
type syncBuffer struct {
	bytes.Buffer
	syncs int
}

func (s *syncBuffer) Sync() error { s.syncs++; return nil }

func TestJournalWriterRoundTrip(t *testing.T) {
	var buf syncBuffer
	jw := newJournalWriter(&buf)
	at := time.Date(2026, 11, 24, 14, 0, 0, 123456789, time.UTC)
	recs := []Record{
		{ID: 1, Op: OpRegister, Domain: "ldx-1", At: at},
		{ID: 2, Op: OpDelete, Domain: "ldx-1", At: at, Error: "boom", Uncertain: true},
	}
	for _, r := range recs {
		if err := jw.write(r); err != nil {
			t.Fatal(err)
		}
	}
	if buf.Len() != 0 {
		t.Fatal("records reached the writer before flush")
	}
	if err := jw.flush(); err != nil {
		t.Fatal(err)
	}
	if buf.syncs != 1 {
		t.Fatalf("syncs = %d, want 1", buf.syncs)
	}
	if err := jw.flush(); err != nil || buf.syncs != 1 {
		t.Fatalf("idle flush synced again (%d) or failed (%v)", buf.syncs, err)
	}
	first, _, _ := strings.Cut(buf.String(), "\n")
	if want := `{"id":1,"op":"register","domain":"ldx-1","at":"2026-11-24T14:00:00.123456789Z"}`; first != want {
		t.Fatalf("line = %s\nwant   %s", first, want)
	}
	j, err := ParseJournal(&buf.Buffer)
	if err != nil || len(j.Records) != 2 || j.Records[1].Error != "boom" {
		t.Fatalf("round trip: %+v, %v", j, err)
	}
}

func TestNextSlot(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	iv := 10 * time.Millisecond
	tests := []struct {
		name string
		now  time.Time
		want time.Time
	}{
		{"on time", t0.Add(time.Millisecond), t0.Add(iv)},
		{"late within backlog keeps the schedule", t0.Add(500 * time.Millisecond), t0.Add(iv)},
		{"after a stall restarts from now", t0.Add(2 * time.Second), t0.Add(2 * time.Second)},
	}
	for _, tt := range tests {
		if got := nextSlot(t0, tt.now, iv); !got.Equal(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got.Sub(t0), tt.want.Sub(t0))
		}
	}
}

func TestDomainSet(t *testing.T) {
	s := newDomainSet()
	if _, ok := s.take(3); ok {
		t.Fatal("take from empty set")
	}
	for _, n := range []string{"a", "b", "c"} {
		s.add(n)
	}
	seen := map[string]bool{}
	for i := range 3 {
		n, ok := s.take(uint64(i * 7))
		if !ok || seen[n] {
			t.Fatalf("take %d = %q, %v (seen %v)", i, n, ok, seen)
		}
		seen[n] = true
	}
	if _, ok := s.take(0); ok {
		t.Fatal("set not empty after taking everything")
	}
}

func TestOptionsFill(t *testing.T) {
	ok := Options{ConnString: "host=127.0.0.1", TLD: "test", Rate: 10, JournalPath: "x"}
	tests := []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"ok", func(*Options) {}, ""},
		{"no conn", func(o *Options) { o.ConnString = "" }, "connection string"},
		{"no tld", func(o *Options) { o.TLD = "." }, "TLD"},
		{"zero rate", func(o *Options) { o.Rate = 0 }, "rate"},
		{"negative workers", func(o *Options) { o.Workers = -1 }, "workers"},
		{"no journal", func(o *Options) { o.JournalPath = "" }, "journal"},
		{"bad prefix", func(o *Options) { o.Prefix = "Ld-1" }, "prefix"},
		{"negative mix", func(o *Options) { o.Mix = Mix{Register: 1, Delete: -1} }, "negative"},
	}
	for _, tt := range tests {
		o := ok
		tt.mod(&o)
		err := o.fill()
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				continue
			}
			if o.Workers != 4 || o.Mix != DefaultMix() || o.Seed == 0 || !strings.HasPrefix(o.Prefix, "ld") || o.OpTimeout == 0 {
				t.Errorf("%s: defaults not filled: %+v", tt.name, o)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	// Same seed, same prefix: a run can be replayed.
	a, b := ok, ok
	a.Seed, b.Seed = 42, 42
	if a.fill() != nil || b.fill() != nil || a.Prefix != b.Prefix {
		t.Fatalf("prefix for seed 42: %q vs %q", a.Prefix, b.Prefix)
	}
}
