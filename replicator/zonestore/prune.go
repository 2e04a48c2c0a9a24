package zonestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Prune removes origin's old versions: it keeps the newest keep manifests
// (in List order) and, whatever keep is, the latest accepted and the
// latest published version, because those are what a rollback or a
// failover restores (.hk 2004). It then removes every object no remaining
// manifest of any origin references, and leftovers of crashed writers.
// removed counts the manifests removed.
//
// If any manifest in the store cannot be read, Prune removes nothing: an
// unreadable manifest might be the only reference to an object.
func (s *Store) Prune(origin string, keep int) (removed int, err error) {
	origin, dirName, err := canonicalOrigin(origin)
	if err != nil {
		return 0, fmt.Errorf("prune zone versions: %w", err)
	}
	what := fmt.Sprintf("prune zone %s", origin)
	if keep < 0 {
		return 0, fmt.Errorf("%s: keep %d is negative", what, keep)
	}
	unlock, err := s.lock()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	defer unlock()

	// Everything is read before anything is removed.
	ms, err := s.list(origin, dirName)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	drop := make([]bool, len(ms))
	for i := range ms[:max(0, len(ms)-keep)] {
		drop[i] = true
	}
	if len(ms) > 0 {
		drop[len(ms)-1] = false
	}
	if p, ok := latestPublished(ms); ok {
		for i, m := range ms {
			if m.Digest == p.Digest && m.Serial == p.Serial {
				drop[i] = false
			}
		}
	}
	referenced := make(map[string]bool)
	for i, m := range ms {
		if !drop[i] {
			referenced[m.Digest] = true
		}
	}
	if err := s.referencedByOthers(dirName, referenced); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}

	dir := s.originDir(dirName)
	for i, m := range ms {
		if !drop[i] {
			continue
		}
		p := filepath.Join(dir, manifestName(m.Serial, m.Digest))
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("%s: remove manifest: %w", what, err)
		}
		removed++
	}
	if removed > 0 {
		if err := syncDir(dir); err != nil {
			return removed, fmt.Errorf("%s: %w", what, err)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		if err := removeTemps(dir); err != nil {
			return removed, fmt.Errorf("%s: %w", what, err)
		}
	}

	objects := filepath.Join(s.dir, "objects")
	if err := removeTemps(objects); err != nil {
		return removed, fmt.Errorf("%s: %w", what, err)
	}
	ents, err := os.ReadDir(objects)
	if err != nil {
		return removed, fmt.Errorf("%s: %w", what, err)
	}
	gone := 0
	for _, e := range ents {
		digest, ok := strings.CutSuffix(e.Name(), ".zone")
		if !ok || !validDigest(digest) || referenced[digest] {
			continue
		}
		if err := os.Remove(filepath.Join(objects, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("%s: remove object: %w", what, err)
		}
		gone++
	}
	if gone > 0 {
		if err := syncDir(objects); err != nil {
			return removed, fmt.Errorf("%s: %w", what, err)
		}
	}
	return removed, nil
}

// referencedByOthers adds to ref the digests named by the manifests of
// every origin other than the one in directory skip.
func (s *Store) referencedByOthers(skip string, ref map[string]bool) error {
	root := filepath.Join(s.dir, "manifests")
	dirs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("read %s: %w", root, err)
	}
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == skip {
			continue
		}
		origin := d.Name() + "."
		if d.Name() == "root" {
			origin = "."
		}
		ms, err := s.list(origin, d.Name())
		if err != nil {
			return err
		}
		for _, m := range ms {
			ref[m.Digest] = true
		}
	}
	return nil
}
