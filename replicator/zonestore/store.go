package zonestore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/zone"
)

// Sentinel errors; every error wrapping one names the path, origin or
// serial concerned.
var (
	// ErrNotFound: no such version, or no version at all of the origin.
	ErrNotFound = errors.New("zone version not found")
	// ErrSerialReused: a serial already stored with other content
	// (RIPE 2012: "same serial, different content").
	ErrSerialReused = errors.New("same serial, different content")
	// ErrCorrupt: a stored file is not what was stored (flipped byte,
	// truncation, missing object, mangled manifest). Such a version is
	// never returned for serving.
	ErrCorrupt = errors.New("zone store is corrupt")
)

// Store is the versioned zone store in one directory. Its methods may be
// called concurrently, also from several processes on one directory:
// writers serialise on a file lock, readers only ever see whole files.
type Store struct {
	dir    string
	deltas *deltaCache // recent IXFR differences (Delta)
}

// Open opens the store in dir, creating dir and its layout if missing.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "objects"), filepath.Join(dir, "manifests")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open zone store: %w", err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open zone store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open zone store: %s is not a directory", dir)
	}
	return &Store{dir: dir, deltas: &deltaCache{}}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) objectPath(digest string) string {
	return filepath.Join(s.dir, "objects", digest+".zone")
}

func (s *Store) originDir(dirName string) string {
	return filepath.Join(s.dir, "manifests", dirName)
}

// Put stores z as an accepted version and returns its manifest. From m it
// takes AcceptedAt and AcceptedBy (both required), Source, Report (whose
// serial and digest, when set, must be z's) and Published/PublishedAt;
// the fields describing the zone are filled from z.
//
// Putting a version already stored (same serial, same digest) stores
// nothing new and returns the stored manifest unchanged, after making
// sure its object is intact (rewriting it if it went missing or bad). A
// different digest under a stored serial is ErrSerialReused.
//
// The object is read back and parsed before the manifest is written, so a
// manifest never names a version that cannot be restored (RIPE 2012: the
// backups turned out not to exist).
func (s *Store) Put(z *zone.Zone, m Manifest) (Manifest, error) {
	if z == nil || z.Len() == 0 {
		return Manifest{}, errors.New("put zone version: no zone")
	}
	origin, dirName, err := canonicalOrigin(z.Origin)
	if err != nil {
		return Manifest{}, fmt.Errorf("put zone version: %w", err)
	}
	what := fmt.Sprintf("put zone %s serial %d", origin, z.Serial)
	if !validDigest(z.Digest) {
		return Manifest{}, fmt.Errorf("%s: digest %q is not a hex SHA-256", what, z.Digest)
	}
	switch {
	case m.AcceptedAt.IsZero():
		return Manifest{}, fmt.Errorf("%s: manifest has no acceptance time", what)
	case strings.TrimSpace(m.AcceptedBy) == "":
		return Manifest{}, fmt.Errorf("%s: manifest does not say who accepted it", what)
	case m.Published && m.PublishedAt.IsZero():
		return Manifest{}, fmt.Errorf("%s: manifest is published but has no publication time", what)
	case m.Report != nil && m.Report.Digest != "" && (m.Report.Digest != z.Digest || m.Report.Serial != z.Serial):
		return Manifest{}, fmt.Errorf("%s: gate report is for serial %d digest %s, not this version's digest %s",
			what, m.Report.Serial, m.Report.Digest, z.Digest)
	}

	// The object text is computed and checked against z.Digest before
	// taking the lock: it is the slow part, and a zone whose records no
	// longer match its digest (modified after it was built) must not be
	// stored under that digest.
	text := canonicalBytes(z)
	if sum := zone.TextDigest(text); sum != z.Digest {
		return Manifest{}, fmt.Errorf("%s: %w: records hash to %s, zone says %s (modified after it was built?)", what, ErrCorrupt, sum, z.Digest)
	}

	m.Origin = origin
	m.Serial = z.Serial
	m.Digest = z.Digest
	m.Records = z.Len()
	m.Counts = maps.Clone(z.Counts)
	m.Delegations = len(gates.NewIndex(z).Delegations())
	m.Publications = nil
	if m.Published {
		m.Publications = []time.Time{m.PublishedAt}
	} else {
		m.PublishedAt = time.Time{}
	}

	unlock, err := s.lock()
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", what, err)
	}
	defer unlock()

	dir := s.originDir(dirName)
	stored, err := s.bySerial(dir, origin, z.Serial)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", what, err)
	}
	for _, old := range stored {
		if old.Digest != z.Digest {
			return Manifest{}, fmt.Errorf("%s: %w: stored digest %s, offered digest %s", what, ErrSerialReused, old.Digest, z.Digest)
		}
	}
	if err := s.putObject(z, text); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", what, err)
	}
	if len(stored) > 0 {
		return stored[0], nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := writeManifest(filepath.Join(dir, manifestName(m.Serial, m.Digest)), m); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

// canonicalBytes is the digested text of z: one canonical line per RR,
// sorted, each ending in "\n" (see zone.Zone.Digest). A zone keeps its
// records in this order already, but for the SOA, which comes first: its
// line is merged in where it sorts, so the text is written in one pass
// (holding five million lines to sort them would double a large zone's
// footprint at the moment it is stored).
func canonicalBytes(z *zone.Zone) []byte {
	soa := zone.CanonicalText(z.RR(0))
	b := make([]byte, 0, 88*z.Len()) // a TLD averages 84 bytes a line
	placed := false
	for i := 1; i < z.Len(); i++ {
		l := zone.CanonicalText(z.RR(i))
		if !placed && soa < l {
			b = append(append(b, soa...), '\n')
			placed = true
		}
		b = append(append(b, l...), '\n')
	}
	if !placed {
		b = append(append(b, soa...), '\n')
	}
	return b
}

// putObject makes objects/<digest>.zone hold text, verified. An object
// already there with the right bytes is kept; anything else is replaced
// and read back. Call with the lock held.
func (s *Store) putObject(z *zone.Zone, text []byte) error {
	path := s.objectPath(z.Digest)
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, text) {
		return nil
	}
	if err := writeAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(text)
		return err
	}); err != nil {
		return fmt.Errorf("store object: %w", err)
	}
	// Read back through the parser, not just the bytes: a record whose
	// presentation text does not parse back to itself would make a
	// version that could be listed but never restored.
	if _, err := s.loadObject(path, z.Origin, z.Serial, z.Digest); err != nil {
		return fmt.Errorf("store object: read back: %w", err)
	}
	return nil
}

// Load returns the version m describes, read from its object. The object
// must hash to m.Digest and parse back to the same digest, serial and
// origin; otherwise the error wraps ErrCorrupt and names the file, and no
// zone is returned: a damaged version is never served.
func (s *Store) Load(m Manifest) (*zone.Zone, error) {
	origin, _, err := canonicalOrigin(m.Origin)
	if err != nil {
		return nil, fmt.Errorf("load zone version: %w", err)
	}
	if !validDigest(m.Digest) {
		return nil, fmt.Errorf("load zone %s serial %d: digest %q is not a hex SHA-256", origin, m.Serial, m.Digest)
	}
	z, err := s.loadObject(s.objectPath(m.Digest), origin, m.Serial, m.Digest)
	if err != nil {
		return nil, fmt.Errorf("load zone %s serial %d: %w", origin, m.Serial, err)
	}
	return z, nil
}

func (s *Store) loadObject(path, origin string, serial uint32, digest string) (*zone.Zone, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("object %s: %w: missing: %w", path, ErrCorrupt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read object %s: %w", path, err)
	}
	// The bytes are the digested text, so this catches any change
	// without parsing; parsing below catches text this code would not
	// have written.
	if sum := zone.TextDigest(b); sum != digest {
		return nil, fmt.Errorf("object %s: %w: %d bytes hash to %s, want %s", path, ErrCorrupt, len(b), sum, digest)
	}
	z, err := zone.ParseBytes(b, path, origin)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w: %w", path, ErrCorrupt, err)
	}
	switch {
	case z.Digest != digest:
		return nil, fmt.Errorf("object %s: %w: parses to digest %s, want %s", path, ErrCorrupt, z.Digest, digest)
	case z.Serial != serial:
		return nil, fmt.Errorf("object %s: %w: holds serial %d, want %d", path, ErrCorrupt, z.Serial, serial)
	}
	return z, nil
}

// bySerial returns the manifests stored under serial in dir (none, one,
// or, in a damaged store, several).
func (s *Store) bySerial(dir, origin string, serial uint32) ([]Manifest, error) {
	paths, err := filepath.Glob(filepath.Join(dir, fmt.Sprintf("%010d-*.json", serial)))
	if err != nil {
		return nil, fmt.Errorf("list manifests in %s: %w", dir, err)
	}
	var out []Manifest
	for _, p := range paths {
		m, err := readManifest(p, origin)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Get returns the manifest of origin's version serial.
func (s *Store) Get(origin string, serial uint32) (Manifest, error) {
	origin, dirName, err := canonicalOrigin(origin)
	if err != nil {
		return Manifest{}, fmt.Errorf("get zone version: %w", err)
	}
	ms, err := s.bySerial(s.originDir(dirName), origin, serial)
	if err != nil {
		return Manifest{}, fmt.Errorf("get zone %s serial %d: %w", origin, serial, err)
	}
	switch len(ms) {
	case 0:
		return Manifest{}, fmt.Errorf("get zone %s serial %d: %w", origin, serial, ErrNotFound)
	case 1:
		return ms[0], nil
	default:
		ds := make([]string, len(ms))
		for i, m := range ms {
			ds[i] = m.Digest
		}
		return Manifest{}, fmt.Errorf("get zone %s serial %d: %w: stored digests %s", origin, serial, ErrSerialReused, strings.Join(ds, ", "))
	}
}

// List returns origin's versions, oldest first: by AcceptedAt, then by
// serial in RFC 1982 order, then by digest. An origin with no versions
// has an empty list. A manifest that cannot be read fails the whole list:
// a history with a silent hole in it would mislead a rollback.
func (s *Store) List(origin string) ([]Manifest, error) {
	origin, dirName, err := canonicalOrigin(origin)
	if err != nil {
		return nil, fmt.Errorf("list zone versions: %w", err)
	}
	ms, err := s.list(origin, dirName)
	if err != nil {
		return nil, fmt.Errorf("list zone %s: %w", origin, err)
	}
	return ms, nil
}

func (s *Store) list(origin, dirName string) ([]Manifest, error) {
	dir := s.originDir(dirName)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var ms []Manifest
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		m, err := readManifest(filepath.Join(dir, e.Name()), origin)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	slices.SortStableFunc(ms, compareAccepted)
	return ms, nil
}

// compareAccepted orders manifests by acceptance. Serials break ties in
// RFC 1982 order (a plain < would put 1 after 4294967295 across a wrap).
func compareAccepted(a, b Manifest) int {
	if c := a.AcceptedAt.Compare(b.AcceptedAt); c != 0 {
		return c
	}
	switch {
	case zone.SerialLess(a.Serial, b.Serial):
		return -1
	case zone.SerialLess(b.Serial, a.Serial):
		return 1
	}
	return strings.Compare(a.Digest, b.Digest)
}

// Latest returns origin's most recently accepted version.
func (s *Store) Latest(origin string) (Manifest, error) {
	ms, err := s.List(origin)
	if err != nil {
		return Manifest{}, err
	}
	if len(ms) == 0 {
		return Manifest{}, fmt.Errorf("latest version of zone %s: %w", origin, ErrNotFound)
	}
	return ms[len(ms)-1], nil
}

// LatestPublished returns the version of origin published last: the
// "most recent known-good zone" .hk 2004 re-activated.
func (s *Store) LatestPublished(origin string) (Manifest, error) {
	ms, err := s.List(origin)
	if err != nil {
		return Manifest{}, err
	}
	m, ok := latestPublished(ms)
	if !ok {
		return Manifest{}, fmt.Errorf("latest published version of zone %s: %w", origin, ErrNotFound)
	}
	return m, nil
}

// latestPublished picks, from ms in List order, the one with the latest
// PublishedAt; of equal times the later accepted.
func latestPublished(ms []Manifest) (Manifest, bool) {
	var best Manifest
	found := false
	for _, m := range ms {
		if m.Published && (!found || !m.PublishedAt.Before(best.PublishedAt)) {
			best, found = m, true
		}
	}
	return best, found
}

// PublishedAsOf returns the version of origin that was being served at
// instant t: the one with the latest publication at or before t. A drill
// uses it to compare what secondaries answered with what was published.
func (s *Store) PublishedAsOf(origin string, t time.Time) (Manifest, error) {
	ms, err := s.List(origin)
	if err != nil {
		return Manifest{}, err
	}
	var (
		best  Manifest
		bestT time.Time
		found bool
	)
	for _, m := range ms {
		for _, p := range m.Publications {
			if !p.After(t) && (!found || !p.Before(bestT)) {
				best, bestT, found = m, p, true
			}
		}
	}
	if !found {
		return Manifest{}, fmt.Errorf("version of zone %s published as of %s: %w", origin, t.Format(time.RFC3339), ErrNotFound)
	}
	return best, nil
}

// MarkPublished records that origin's version serial was published at
// at. Marking it again (a rollback re-publishing it) moves PublishedAt
// and adds to Publications.
func (s *Store) MarkPublished(origin string, serial uint32, at time.Time) error {
	origin, dirName, err := canonicalOrigin(origin)
	if err != nil {
		return fmt.Errorf("mark zone version published: %w", err)
	}
	what := fmt.Sprintf("mark zone %s serial %d published", origin, serial)
	if at.IsZero() {
		return fmt.Errorf("%s: no publication time", what)
	}
	unlock, err := s.lock()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer unlock()
	dir := s.originDir(dirName)
	ms, err := s.bySerial(dir, origin, serial)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch len(ms) {
	case 0:
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case 1:
	default:
		return fmt.Errorf("%s: %w: %d manifests under one serial", what, ErrSerialReused, len(ms))
	}
	m := ms[0]
	m.Published = true
	i, _ := slices.BinarySearchFunc(m.Publications, at, time.Time.Compare)
	m.Publications = slices.Insert(m.Publications, i, at)
	m.PublishedAt = m.Publications[len(m.Publications)-1]
	if err := writeManifest(filepath.Join(dir, manifestName(m.Serial, m.Digest)), m); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
