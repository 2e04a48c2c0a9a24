package zone

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Parallel parsing. miekg's lexer reads one byte at a time on one core,
// and on a 1,000,000-delegation zone (5 million records) the parse is the
// longest step of a check after the signatures. A file that a generator
// wrote (one record per line, absolute names, no directives) can be cut
// at line starts into chunks that parse independently; each chunk gets
// its own parser on its own core.
//
// Parsing in pieces must give exactly what one sequential parse gives, so
// anything a chunk's parser could see differently from the sequential one
// abandons the attempt and the file is parsed sequentially instead:
//   - a line starting with '$' ($TTL, $ORIGIN, $INCLUDE, $GENERATE carry
//     state from one line to the next);
//   - a chunk that does not end outside parentheses and quotes (a record
//     continued across the cut);
//   - any error in any chunk, among them "missing TTL with no previous
//     value" when a chunk's first record would have inherited its TTL
//     from the record before the cut (the message and line of a real
//     syntax error come from the sequential parse);
//   - a cut is only ever made before a line that starts with an owner
//     name, so no record inherits its owner across a cut.

// parallelMinSize is the smallest file worth cutting up.
const parallelMinSize = 4 << 20

// parallelChunk is the target size of one chunk.
const parallelChunk = 1 << 20

// errSequential abandons a parallel parse.
var errSequential = errors.New("zone file needs a sequential parse")

type chunk struct {
	idx       int
	data      []byte
	firstLine int  // line number of data's first line in the file
	last      bool // the end of the file
}

// sentinel is appended to every chunk but the last. miekg's parser looks
// ahead at the end of a record and accepts at the very end of its input
// what it refuses before another line (a type without RDATA is a
// "dynamic update" record there): with the sentinel, a chunk's last
// record is followed by a line as it is in the file. The sentinel must
// come back as the chunk's last record, and is dropped.
const sentinel = "@ 0 IN TXT \"regdr-parse-sentinel\"\n"

// parseFileParallel parses path on workers cores into pieces in file
// order. ok is false when the file must be parsed sequentially (see
// above); err is only an I/O error.
func parseFileParallel(path, origin string, workers int) (pieces []piece, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("open zone file: %w", err)
	}
	defer f.Close()
	return parseParallel(f, path, origin, workers, parallelChunk)
}

func parseParallel(r io.Reader, file, origin string, workers, chunkSize int) (pieces []piece, ok bool, err error) {
	var (
		failed  atomic.Bool
		mu      sync.Mutex
		results []piece
		wg      sync.WaitGroup
	)
	work := make(chan chunk, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if failed.Load() {
					continue
				}
				res, err := parseChunk(c, file, origin)
				if err != nil {
					failed.Store(true)
					continue
				}
				mu.Lock()
				for len(results) <= c.idx {
					results = append(results, piece{})
				}
				results[c.idx] = res
				mu.Unlock()
			}
		}()
	}
	readErr := splitChunks(r, chunkSize, work, &failed)
	close(work)
	wg.Wait()
	if readErr != nil && !errors.Is(readErr, errSequential) {
		return nil, false, readErr
	}
	if readErr != nil || failed.Load() {
		return nil, false, nil
	}
	return results, true, nil
}

// splitChunks reads r and sends it to work in chunks of about chunkSize
// cut before lines that start with an owner name. It stops early once
// failed is set.
func splitChunks(r io.Reader, chunkSize int, work chan<- chunk, failed *atomic.Bool) error {
	var buf []byte
	line, idx, want := 1, 0, chunkSize
	eof := false
	for {
		if failed.Load() {
			return errSequential
		}
		if cap(buf) < want+chunkSize {
			nb := make([]byte, len(buf), want+chunkSize)
			copy(nb, buf)
			buf = nb
		}
		for len(buf) < want && !eof {
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				eof = true
			} else if err != nil {
				return fmt.Errorf("read zone file: %w", err)
			}
		}
		cut := len(buf)
		if !eof {
			if cut = lastCut(buf); cut == 0 {
				want = 2 * len(buf) // one enormous record: read on
				continue
			}
		}
		if cut > 0 {
			data := make([]byte, cut)
			copy(data, buf[:cut])
			work <- chunk{idx: idx, data: data, firstLine: line, last: eof && cut == len(buf)}
			idx++
			line += bytes.Count(data, []byte{'\n'})
			buf = buf[:copy(buf, buf[cut:])]
		}
		want = chunkSize
		if eof && len(buf) == 0 {
			return nil
		}
	}
}

// lastCut is the last position in b just after a newline and before a
// line that starts with an owner name; 0 if there is none.
func lastCut(b []byte) int {
	for i := len(b) - 2; i >= 0; i-- {
		if b[i] != '\n' {
			continue
		}
		switch b[i+1] {
		case ' ', '\t', '\r', '\n', ';', '$', '(', ')', '"':
			continue
		}
		return i + 1
	}
	return 0
}

// parseChunk parses one chunk, or fails if it would parse differently
// on its own than as part of the file.
func parseChunk(c chunk, file, origin string) (piece, error) {
	if !cleanChunk(c.data) || c.idx > 0 && !explicitTTL(c.data) {
		return piece{}, errSequential
	}
	data := c.data
	if !c.last {
		data = append(data, sentinel...)
	}
	lr := &lineReader{br: bufio.NewReaderSize(bytes.NewReader(data), 64*1024), line: 1}
	zp := dns.NewZoneParser(lr, origin, file)
	zp.SetIncludeAllowed(false)
	// Each record is packed once the next one is read: the last one of
	// a chunk but the last must be the sentinel, and is not kept.
	b := newPieceBuilder(len(c.data) * 3 / 4)
	var pending dns.RR
	pendingLine := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if pending != nil {
			if err := b.add(pending, pendingLine); err != nil {
				return piece{}, errSequential // the sequential parse says where
			}
		}
		pending, pendingLine = rr, lr.entryStart()+c.firstLine-1
	}
	if err := zp.Err(); err != nil {
		return piece{}, errSequential
	}
	if !c.last {
		if pending == nil || !isSentinel(pending, origin) {
			return piece{}, errSequential
		}
	} else if pending != nil {
		if err := b.add(pending, pendingLine); err != nil {
			return piece{}, errSequential
		}
	}
	return b.done(), nil
}

func isSentinel(rr dns.RR, origin string) bool {
	t, ok := rr.(*dns.TXT)
	return ok && t.Hdr.Name == origin && t.Hdr.Ttl == 0 && len(t.Txt) == 1 && t.Txt[0] == "regdr-parse-sentinel"
}

// explicitTTL reports whether the record on b's first line spells out its
// TTL ("owner TTL [class] type" or "owner class TTL type"). Without one,
// miekg gives it the TTL of the record before, which is in another chunk
// (or, failing that, 0 without a word).
func explicitTTL(b []byte) bool {
	if i := bytes.IndexAny(b, "\n;(\""); i >= 0 {
		b = b[:i]
	}
	f := bytes.Fields(b)
	switch {
	case len(f) > 1 && isTTL(f[1]):
		return true
	case len(f) > 2 && isClass(f[1]) && isTTL(f[2]):
		return true
	}
	return false
}

// isTTL: digits, optionally with BIND's unit letters (1h30m).
func isTTL(t []byte) bool {
	if len(t) == 0 || t[0] < '0' || t[0] > '9' {
		return false
	}
	for _, c := range t {
		switch {
		case c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("smhdwSMHDW"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isClass(t []byte) bool {
	u := strings.ToUpper(string(t))
	_, ok := dns.StringToClass[u]
	return ok || strings.HasPrefix(u, "CLASS")
}

// cleanChunk reports whether b, read from outside any parentheses and
// quotes, ends outside them too and has no line starting with '$'.
func cleanChunk(b []byte) bool {
	depth := 0
	quote, comment := false, false
	lineStart := true
	for i := 0; i < len(b); i++ {
		c := b[i]
		if lineStart && c == '$' {
			return false
		}
		lineStart = c == '\n'
		switch {
		case c == '\n':
			comment = false
		case comment:
		case c == '\\':
			i++ // escaped: the next byte is literal
			if i < len(b) && b[i] == '\n' {
				lineStart = true
			}
		case c == '"':
			quote = !quote
		case quote:
		case c == ';':
			comment = true
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0 && !quote
}

// useParallel reports whether a file of size bytes is worth parsing in
// parallel on this machine.
func useParallel(size int64) (workers int, ok bool) {
	workers = runtime.GOMAXPROCS(0)
	return workers, workers > 1 && size >= parallelMinSize
}
