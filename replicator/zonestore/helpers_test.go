package zonestore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zone/zonetest"
)

// t0 is the instant the test histories start at.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "zones"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// accepted is the manifest an agent would pass for a version accepted at.
func accepted(at time.Time) Manifest {
	return Manifest{AcceptedAt: at, AcceptedBy: "agent tokyo", Source: "file:test.zone"}
}

func fixture(t testing.TB, name string) *zone.Zone {
	t.Helper()
	z, err := zone.ParseFile(filepath.Join("testdata", name), "test.")
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return z
}

// gen is a small generated version; n varies the content under one serial.
// zonetest cannot make a root zone (it would write "ns1.."), so the root
// gets a small one of its own.
func gen(t testing.TB, origin string, serial uint32, n int) *zone.Zone {
	t.Helper()
	if origin != "." {
		return zonetest.Zone(t, origin, serial, n)
	}
	text := fmt.Sprintf(". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. %d 1800 900 604800 86400\n", serial) +
		". 518400 IN NS a.root-servers.net.\n"
	for i := range n {
		text += fmt.Sprintf("tld%d. 172800 IN NS ns.nic.tld%d.\n", i, i)
	}
	z, err := zone.Parse(strings.NewReader(text), "root", ".")
	if err != nil {
		t.Fatalf("root zone: %v", err)
	}
	return z
}

func mustPut(t testing.TB, s *Store, z *zone.Zone, m Manifest) Manifest {
	t.Helper()
	got, err := s.Put(z, m)
	if err != nil {
		t.Fatalf("Put serial %d: %v", z.Serial, err)
	}
	return got
}

func serials(ms []Manifest) []uint32 {
	out := make([]uint32, len(ms))
	for i, m := range ms {
		out[i] = m.Serial
	}
	return out
}

// files lists the regular files under dir, relative to it, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	slices.Sort(out)
	return out
}
