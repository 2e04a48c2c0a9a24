package zonestore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/gates"
)

// Manifest describes one accepted version of a zone.
type Manifest struct {
	// Origin, Serial, Digest, Records, Counts and Delegations describe the
	// zone itself; Put fills them from the *zone.Zone, whatever the
	// caller passed.
	Origin  string         `json:"origin"`
	Serial  uint32         `json:"serial"`
	Digest  string         `json:"digest"`
	Records int            `json:"records"`
	Counts  map[string]int `json:"counts"`
	// Delegations counts delegation points not below another one, as the
	// budget gate counts them (gates.Index.Delegations).
	Delegations int `json:"delegations"`
	// Report is the gate report the version was accepted on; nil when it
	// was accepted without one (e.g. imported from a backup).
	Report *gates.Report `json:"report,omitempty"`
	// AcceptedAt and AcceptedBy are required: a version nobody can
	// account for is the kind of zone .se 2009 published.
	AcceptedAt time.Time `json:"accepted_at"`
	// AcceptedBy is who accepted the version: "agent tokyo",
	// "operator alice (override)".
	AcceptedBy string `json:"accepted_by"`
	// Source is where the version came from: "file:test.zone",
	// "axfr:tokyo".
	Source string `json:"source"`
	// Published is set once the version has been served; PublishedAt is
	// the last time it was (re-)published.
	Published   bool      `json:"published"`
	PublishedAt time.Time `json:"published_at,omitzero"`
	// Publications lists every instant the version was published, oldest
	// first (a rollback re-publishes an old version, and PublishedAt alone
	// would then erase when it was first served). PublishedAsOf uses it.
	Publications []time.Time `json:"publications,omitempty"`
}

// manifestFormat is the on-disk format version. A reader refuses any
// other: guessing at a manifest written by a newer regdr could serve the
// wrong version.
const manifestFormat = 1

type manifestFile struct {
	Format int `json:"format"`
	Manifest
}

// canonicalOrigin returns origin lower-cased and absolute, and the name of
// its directory under manifests/. Origins are restricted to the characters
// a registry zone uses, so the directory name can never escape manifests/
// or collide with another origin's through escapes.
func canonicalOrigin(origin string) (canon, dir string, err error) {
	if origin == "" {
		return "", "", fmt.Errorf("zone origin is empty")
	}
	canon = dns.CanonicalName(origin)
	if _, ok := dns.IsDomainName(canon); !ok {
		return "", "", fmt.Errorf("zone origin %q is not a domain name", origin)
	}
	switch canon {
	case ".":
		return canon, "root", nil
	case "root.":
		// Its directory would be the root zone's.
		return "", "", fmt.Errorf("zone origin %q is not stored: its directory name is the root zone's", origin)
	}
	for _, c := range canon {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", fmt.Errorf("zone origin %q: character %q is not stored (only letters, digits, '-', '_')", origin, c)
		}
	}
	if strings.HasPrefix(canon, ".") {
		return "", "", fmt.Errorf("zone origin %q is not a domain name", origin)
	}
	return canon, strings.TrimSuffix(canon, "."), nil
}

// manifestName is the file name of the manifest of (serial, digest).
// Serials are zero-padded so a directory listing sorts by serial.
func manifestName(serial uint32, digest string) string {
	return fmt.Sprintf("%010d-%s.json", serial, digest[:12])
}

// validDigest reports a hex SHA-256 as zone.Digest makes it. Checked
// before a digest from a manifest becomes part of a path.
func validDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for _, c := range d {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// readManifest reads and checks one manifest file: it must be the format
// this code writes, for the origin whose directory it is in, and its name
// must match its serial and digest (a renamed or hand-edited manifest
// would otherwise pass a serial-reuse check it should fail).
func readManifest(path, origin string) (Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", path, err)
	}
	var f manifestFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Manifest{}, fmt.Errorf("manifest %s: %w: %w", path, ErrCorrupt, err)
	}
	m := f.Manifest
	switch {
	case f.Format != manifestFormat:
		return Manifest{}, fmt.Errorf("manifest %s: %w: format %d, this regdr reads %d", path, ErrCorrupt, f.Format, manifestFormat)
	case m.Origin != origin:
		return Manifest{}, fmt.Errorf("manifest %s: %w: origin %q in the directory of %q", path, ErrCorrupt, m.Origin, origin)
	case !validDigest(m.Digest):
		return Manifest{}, fmt.Errorf("manifest %s: %w: digest %q is not a hex SHA-256", path, ErrCorrupt, m.Digest)
	case filepath.Base(path) != manifestName(m.Serial, m.Digest):
		return Manifest{}, fmt.Errorf("manifest %s: %w: holds serial %d digest %s", path, ErrCorrupt, m.Serial, m.Digest)
	}
	return m, nil
}

// writeManifest writes m atomically to path (replacing any previous one).
func writeManifest(path string, m Manifest) error {
	b, err := json.MarshalIndent(manifestFile{Format: manifestFormat, Manifest: m}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest %s: %w", path, err)
	}
	b = append(b, '\n')
	return writeAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
