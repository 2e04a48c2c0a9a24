package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/regdr/regdr/keys/inventory"
)

// InstallResult says what Install did, by key name.
type InstallResult struct {
	Installed []string // written now
	Present   []string // already there with identical files
}

// Hook is called between the steps of an install (tests kill the process
// there); nil means none. Steps: "validated", then per file
// "<file>:partial", "<file>:synced", "<file>:renamed".
type Hook func(step string)

// Install writes pairs into dir. It first checks every pair against what
// is there: a file of the same name with other content refuses the whole
// install (ErrTagConflict) before anything is written. Each file is
// written to a 0600 temp file in dir, fsynced, renamed into place, and the
// directory fsynced; the .private goes first and the .key last, so a
// reader that looks for .key files (zonesign.LoadKeys) never finds a key
// whose private half is missing or torn.
func Install(dir string, pairs []inventory.Pair, hook Hook) (InstallResult, error) {
	if hook == nil {
		hook = func(string) {}
	}
	var res InstallResult
	var todo []inventory.Pair
	for _, p := range pairs {
		name := p.Key.Name
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\") {
			return InstallResult{}, fmt.Errorf("install into %s: %w: bad key name %q", dir, ErrBadKey, name)
		}
		same := 0
		for _, f := range []struct {
			ext  string
			want []byte
		}{{".key", p.Public}, {".private", p.Private}} {
			have, err := os.ReadFile(filepath.Join(dir, name+f.ext))
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return InstallResult{}, fmt.Errorf("install %s into %s: %w", name, dir, err)
			case bytes.Equal(have, f.want):
				same++
			default:
				// Never name the content: only that it differs.
				return InstallResult{}, fmt.Errorf("install %s into %s: %w (%s%s differs from the bundle's); nothing was installed", name, dir, ErrTagConflict, name, f.ext)
			}
		}
		if same == 2 {
			res.Present = append(res.Present, name)
			continue
		}
		todo = append(todo, p)
	}
	hook("validated")
	for _, p := range todo {
		base := filepath.Join(dir, p.Key.Name)
		if err := writeAtomic(base+".private", 0o600, p.Private, hook); err != nil {
			return res, fmt.Errorf("install %s: %w", p.Key.Name, err)
		}
		if err := writeAtomic(base+".key", 0o644, p.Public, hook); err != nil {
			return res, fmt.Errorf("install %s: %w", p.Key.Name, err)
		}
		res.Installed = append(res.Installed, p.Key.Name)
	}
	return res, nil
}

// tempPrefix starts every temp file name: never a K*.key name, so no key
// loader picks one up; RemoveTemps clears those a crash left behind.
const tempPrefix = ".regdr-install-"

func writeAtomic(path string, mode fs.FileMode, data []byte, hook Hook) (err error) {
	dir := filepath.Dir(path)
	file := filepath.Base(path)
	tmp, err := os.CreateTemp(dir, tempPrefix+file+"-*")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes 0600 files: the secret is never readable by others,
	// even before the final mode is set.
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("chmod temp file for %s: %w", path, err)
	}
	half := len(data) / 2
	if _, err := tmp.Write(data[:half]); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	hook(file + ":partial")
	if _, err := tmp.Write(data[half:]); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	hook(file + ":synced")
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	hook(file + ":renamed")
	return nil
}

// RemoveTemps deletes temp files an interrupted install left in dir.
func RemoveTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean install temps in %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("clean install temps in %s: %w", dir, err)
			}
		}
	}
	return nil
}
