package zonestore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// tmpPrefix starts the name of every file being written. A writer holds
// the store lock while its temporary file exists, so one found by a lock
// holder is a leftover of a crashed writer and may be removed.
const tmpPrefix = ".tmp-"

// writeAtomic makes path hold exactly what write produces, or leaves it
// as it was: temp file in the same directory, fsync, rename, fsync of the
// directory (without the last step the rename itself may not survive a
// power cut, and the file would vanish after it had been reported stored).
func writeAtomic(path string, perm os.FileMode, write func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// removeTemps removes leftovers of crashed writers in dir. Call only with
// the store lock held.
func removeTemps(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", dir, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove leftover %s: %w", filepath.Join(dir, e.Name()), err)
			}
		}
	}
	return nil
}

// ErrLocked is returned when another writer held the store lock for
// longer than lockWait.
var ErrLocked = errors.New("zone store is locked by another writer")

// lockWait bounds how long a writer waits for the store lock. Writers
// hold it for one version's write and read-back (well under a second for
// a million-record zone on a local disk), so 30s only runs out when a
// writer is stuck, and then failing loudly beats queueing behind it.
const lockWait = 30 * time.Second

// lockPoll is how often a waiting writer retries the lock.
const lockPoll = 5 * time.Millisecond

// lock takes the store's exclusive write lock. flock(2) locks belong to
// the open file description, so two Stores on one directory in the same
// process exclude each other too, and the kernel drops the lock of a
// process that dies holding it.
func (s *Store) lock() (unlock func(), err error) {
	path := filepath.Join(s.dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open store lock %s: %w", path, err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w (waited %s)", path, ErrLocked, lockWait)
		}
		time.Sleep(lockPoll)
	}
}
