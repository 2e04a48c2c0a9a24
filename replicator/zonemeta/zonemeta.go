// Package zonemeta is the small sidecar a registry's zone generator writes
// next to each zone file: what the registry database said, in the same
// snapshot the zone was built from. The reconciliation gate compares the
// zone that arrived with it — the .hk 2004 fix: "the number of records the
// database says there should be is compared with the number actually
// generated; on a discrepancy the new zone is NOT applied".
//
// The generator writes the sidecar BEFORE it renames the zone into place,
// so a zone whose sidecar names another serial (a generator killed between
// the two, or one that writes none) is checked without reconciliation, and
// the report says so.
package zonemeta

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Meta is one sidecar.
type Meta struct {
	Origin string `json:"origin"`
	Serial uint32 `json:"serial"`
	// Delegations is the delegation count the database held in the
	// generator's snapshot.
	Delegations int `json:"delegations"`
	// JournalID is the newest registry journal entry the snapshot saw.
	JournalID int64 `json:"journal_id"`
}

// Path is the sidecar of a zone file.
func Path(zoneFile string) string { return zoneFile + ".meta.json" }

// Write stores m atomically (temp file, fsync, rename).
func Write(zoneFile string, m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := Path(zoneFile)
	f, err := os.CreateTemp(filepath.Dir(path), ".meta-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Read returns the sidecar of zoneFile if it describes serial; ok is false
// when there is none or it describes another version.
func Read(zoneFile string, serial uint32) (m Meta, ok bool, err error) {
	b, err := os.ReadFile(Path(zoneFile))
	if os.IsNotExist(err) {
		return Meta{}, false, nil
	}
	if err != nil {
		return Meta{}, false, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, false, fmt.Errorf("%s: %w", Path(zoneFile), err)
	}
	return m, m.Serial == serial, nil
}
