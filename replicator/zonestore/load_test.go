package zonestore

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestLoadDetectsDamage: a stored version whose object changed on disk is
// an error naming the file, and no zone comes back to be served.
func TestLoadDetectsDamage(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b []byte) []byte // nil: remove the object
		wantRe string
	}{
		{name: "flipped byte", damage: func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }, wantRe: `bytes hash to`},
		{name: "flipped byte in a serial digit", damage: func(b []byte) []byte {
			i := strings.Index(string(b), "2024010101")
			b[i+9] = '2'
			return b
		}, wantRe: `bytes hash to`},
		{name: "truncated", damage: func(b []byte) []byte { return b[:len(b)-10] }, wantRe: `bytes hash to`},
		{name: "truncated at a line end", damage: func(b []byte) []byte {
			return b[:strings.LastIndex(strings.TrimSuffix(string(b), "\n"), "\n")+1]
		}, wantRe: `bytes hash to`},
		{name: "empty", damage: func(b []byte) []byte { return nil }, wantRe: `0 bytes hash to`},
		{name: "line added", damage: func(b []byte) []byte {
			return append(b, "evil.test.\t86400\tIN\tNS\tns.evil.example.\n"...)
		}, wantRe: `bytes hash to`},
		{name: "missing", wantRe: `missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			z := fixture(t, "v1.zone")
			m := mustPut(t, s, z, accepted(t0))
			path := s.objectPath(m.Digest)
			if tt.damage == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tt.damage(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Load(m)
			if got != nil {
				t.Errorf("Load returned a zone (serial %d, %d records) from a damaged object", got.Serial, got.Len())
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load error %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "serial 2024010101") {
				t.Errorf("error %q does not name the file %s and the serial", err, path)
			}
			if !regexp.MustCompile(tt.wantRe).MatchString(err.Error()) {
				t.Errorf("error %q does not match %s", err, tt.wantRe)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	s := newStore(t)
	z := fixture(t, "v1.zone")
	m := mustPut(t, s, z, accepted(t0))
	got, err := s.Load(m)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.Digest != z.Digest || got.Serial != z.Serial || got.Origin != z.Origin || got.Len() != z.Len() {
		t.Errorf("Load = %s %d %s (%d records), want %s %d %s (%d)",
			got.Origin, got.Serial, got.Digest, got.Len(), z.Origin, z.Serial, z.Digest, z.Len())
	}
	if d := Diff(z, got); !d.Empty() {
		t.Errorf("loaded version differs from the stored one: %s", d.Summary())
	}
	bad := []struct {
		name string
		m    Manifest
	}{
		{"digest not hex", Manifest{Origin: "test.", Serial: m.Serial, Digest: "../../etc/passwd"}},
		{"no origin", Manifest{Serial: m.Serial, Digest: m.Digest}},
		{"other serial", Manifest{Origin: "test.", Serial: m.Serial + 1, Digest: m.Digest}},
	}
	for _, tt := range bad {
		if z, err := s.Load(tt.m); err == nil || z != nil {
			t.Errorf("%s: Load succeeded", tt.name)
		}
	}
}
