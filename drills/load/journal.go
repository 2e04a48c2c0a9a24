package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Record is one line of the load journal.
//
// An acknowledged write (its COMMIT returned success) is recorded after the
// COMMIT, with the registry journal id it got. A write whose COMMIT got no
// answer is recorded with Error set and Uncertain true, under the journal
// id it would have: it may or may not be in the database. Writes that
// failed for certain (refused, or the database was unreachable) wrote
// nothing and are not recorded; Stats counts them.
type Record struct {
	ID        int64     `json:"id"`
	Op        string    `json:"op"`
	Domain    string    `json:"domain"`
	At        time.Time `json:"at"`
	Error     string    `json:"error,omitempty"`
	Uncertain bool      `json:"uncertain,omitempty"`
}

// Acked reports whether the database acknowledged the write.
func (r Record) Acked() bool { return r.Error == "" }

// Journal is a parsed load journal.
type Journal struct {
	Records []Record
	// TornTail is a final line cut short by a crash (no newline, not
	// valid JSON); it is not in Records. Empty if the file ended cleanly.
	TornTail string
}

// ReadJournal reads the load journal at path. A torn final line (the load
// generator died mid-write) is skipped, not an error; ReadJournalFile says
// whether there was one.
func ReadJournal(path string) ([]Record, error) {
	j, err := ReadJournalFile(path)
	return j.Records, err
}

// ReadJournalFile reads the load journal at path and reports a torn tail.
func ReadJournalFile(path string) (Journal, error) {
	f, err := os.Open(path)
	if err != nil {
		return Journal{}, fmt.Errorf("read load journal: %w", err)
	}
	defer f.Close()
	j, err := ParseJournal(f)
	if err != nil {
		return Journal{}, fmt.Errorf("read load journal %s: %w", path, err)
	}
	return j, nil
}

// ParseJournal parses JSON lines. Only the last line may be damaged, and
// only if it has no newline: the file is only ever appended to, so a crash
// can cut the last line short but never garble an earlier one, and damage
// anywhere else is corruption.
func ParseJournal(r io.Reader) (Journal, error) {
	var j Journal
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return j, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return j, fmt.Errorf("line %d: %w", lineNo, err)
		}
		complete := bytes.HasSuffix(line, []byte("\n"))
		var rec Record
		if uerr := json.Unmarshal(bytes.TrimSpace(line), &rec); uerr != nil || rec.Op == "" {
			if !complete {
				j.TornTail = string(line)
				return j, nil
			}
			if uerr == nil {
				uerr = errors.New("no op")
			}
			return j, fmt.Errorf("line %d: %w", lineNo, uerr)
		}
		j.Records = append(j.Records, rec)
		if !complete {
			return j, nil
		}
	}
}

// syncer is an *os.File or anything else that can make its writes durable.
type syncer interface{ Sync() error }

// journalWriter appends records and makes them durable at least every
// flushEvery: an ack in the journal may lag the database by that much, but
// a record never precedes its COMMIT.
type journalWriter struct {
	mu    sync.Mutex
	buf   *bufio.Writer
	sync  syncer // nil if the writer cannot sync
	dirty bool
	err   error // first write/flush error; sticky
}

const flushEvery = 100 * time.Millisecond

func newJournalWriter(w io.Writer) *journalWriter {
	jw := &journalWriter{buf: bufio.NewWriterSize(w, 64<<10)}
	if s, ok := w.(syncer); ok {
		jw.sync = s
	}
	return jw
}

func (jw *journalWriter) write(r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode load record: %w", err)
	}
	line = append(line, '\n')
	jw.mu.Lock()
	defer jw.mu.Unlock()
	if jw.err != nil {
		return jw.err
	}
	if _, err := jw.buf.Write(line); err != nil {
		jw.err = fmt.Errorf("write load journal: %w", err)
		return jw.err
	}
	jw.dirty = true
	return nil
}

// flush writes out buffered records and syncs them.
func (jw *journalWriter) flush() error {
	jw.mu.Lock()
	defer jw.mu.Unlock()
	if jw.err != nil || !jw.dirty {
		return jw.err
	}
	if err := jw.buf.Flush(); err != nil {
		jw.err = fmt.Errorf("flush load journal: %w", err)
		return jw.err
	}
	if jw.sync != nil {
		if err := jw.sync.Sync(); err != nil {
			jw.err = fmt.Errorf("fsync load journal: %w", err)
			return jw.err
		}
	}
	jw.dirty = false
	return nil
}
