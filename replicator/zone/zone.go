// Package zone holds one parsed version of a DNS zone: its records, its SOA
// serial, a content digest and per-type counts. Every later stage (gates,
// the versioned store, serving, replication) works on this one type, so a
// version is identified the same way everywhere: by serial AND digest.
//
// The digest exists because a serial alone cannot tell two versions apart
// when something went wrong upstream (INCIDENTS.md, RIPE NCC 2012: a race
// set wrong serials and incomplete zones propagated under them). "Same
// serial, different content" is only detectable if content has its own
// fingerprint.
//
// A *Zone is immutable once built: the server hands the same value to many
// concurrent transfers, so callers must not modify Records or Counts after
// FromRecords or Parse returned it.
package zone

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Zone is one version of one zone.
type Zone struct {
	// Origin is the zone apex, lower case, fully qualified.
	Origin string
	// Serial is the SOA serial of this version.
	Serial uint32
	// Records holds every RR of the zone exactly once: the SOA first,
	// then the rest in the order of their canonical text (see Digest).
	Records []dns.RR
	// Digest is the hex SHA-256 of the canonical text: one line per RR
	// (rr.String() with the owner name lower-cased), duplicates removed,
	// lines sorted, each ending in "\n". Two versions with equal digests
	// hold the same records with the same TTLs; case differences inside
	// RDATA names count as differences, which errs on the side of
	// flagging a change.
	Digest string
	// Counts is the number of RRs per type mnemonic ("NS", "DS", ...).
	Counts map[string]int
	// File and Lines say where each record came from when the zone was
	// parsed from a file: Lines[i] is the line on which Records[i]
	// begins, so a gate can report "file:line" for a bad record. Both
	// are empty for zones built from records (e.g. a transfer).
	File  string
	Lines []int
}

// SOA returns the zone's SOA record.
func (z *Zone) SOA() *dns.SOA { return z.Records[0].(*dns.SOA) }

// Len is the number of records in the zone, SOA included.
func (z *Zone) Len() int { return len(z.Records) }

// ErrNoSOA and ErrSeveralSOA are returned (wrapped) for a zone without
// exactly one SOA record; ErrSOANotAtOrigin when its owner is not the apex.
var (
	ErrNoSOA          = errors.New("zone has no SOA record")
	ErrSeveralSOA     = errors.New("zone has more than one SOA record")
	ErrSOANotAtOrigin = errors.New("SOA record is not at the zone origin")
)

// FromRecords builds a Zone from rrs. The slice is not modified; the RR
// values are shared with the result, so the caller must not modify them
// afterwards. Exact duplicates are dropped (an RRset is a set, and every
// secondary would drop them too, so keeping them would make the digest of
// a transferred copy differ from the original).
func FromRecords(origin string, rrs []dns.RR) (*Zone, error) {
	return build(origin, piece{rrs: rrs})
}

// piece is part of a zone's records in file order, with their source
// lines (lines[i] for rrs[i]; nil when not from a file) and canonical
// texts if already computed (nil: computed here).
type piece struct {
	rrs   []dns.RR
	lines []int
	texts []string
}

// entry is one record being put in digest order.
type entry struct {
	text string
	rr   dns.RR
	line int
}

// build makes a Zone of the records of pieces, in order. Either every
// piece has lines or none has.
func build(origin string, pieces ...piece) (*Zone, error) {
	origin, err := canonicalOrigin(origin)
	if err != nil {
		return nil, err
	}
	var soa *dns.SOA
	n := 0
	for _, p := range pieces {
		n += len(p.rrs)
	}
	lines := len(pieces) > 0 && pieces[0].lines != nil
	entries := make([]entry, 0, n)
	for _, p := range pieces {
		for i, rr := range p.rrs {
			if rr == nil {
				continue
			}
			if s, ok := rr.(*dns.SOA); ok {
				if !strings.EqualFold(s.Hdr.Name, origin) {
					return nil, fmt.Errorf("zone %s: %w: owner %s", origin, ErrSOANotAtOrigin, s.Hdr.Name)
				}
				if soa != nil && !dns.IsDuplicate(soa, s) {
					return nil, fmt.Errorf("zone %s: %w (serials %d and %d)", origin, ErrSeveralSOA, soa.Serial, s.Serial)
				}
				if soa == nil {
					soa = s
					entries = append(entries, entry{textOf(p.texts, i, s), s, lineOf(p.lines, i)})
				}
				continue
			}
			entries = append(entries, entry{textOf(p.texts, i, rr), rr, lineOf(p.lines, i)})
		}
	}
	if soa == nil {
		return nil, fmt.Errorf("zone %s: %w", origin, ErrNoSOA)
	}
	// Stable, so of two identical records the first in the file is kept
	// (and its line reported).
	sortEntries(entries, runtime.GOMAXPROCS(0))

	z := &Zone{
		Origin:  origin,
		Serial:  soa.Serial,
		Records: make([]dns.RR, 0, len(entries)),
		Counts:  make(map[string]int),
	}
	z.Records = append(z.Records, soa)
	if lines {
		z.Lines = make([]int, 1, len(entries))
	}
	h := sha256.New()
	prev := ""
	for i, e := range entries {
		if i > 0 && e.text == prev {
			continue
		}
		prev = e.text
		io.WriteString(h, e.text)
		io.WriteString(h, "\n")
		z.Counts[typeName(e.rr.Header().Rrtype)]++
		switch {
		case e.rr == dns.RR(soa) && lines:
			z.Lines[0] = e.line
		case e.rr != dns.RR(soa):
			z.Records = append(z.Records, e.rr)
			if lines {
				z.Lines = append(z.Lines, e.line)
			}
		}
	}
	z.Digest = hex.EncodeToString(h.Sum(nil))
	return z, nil
}

// ParseFile reads a zone file in RFC 1035 presentation format. $INCLUDE is
// refused: a zone file comes from the registry's generator, and following
// includes would let a bad file make us read (and quote in errors) any
// file this process can read. Syntax errors read "file:line:col: ...".
func ParseFile(path, origin string) (*Zone, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		if workers, ok := useParallel(fi.Size()); ok {
			o, err := canonicalOrigin(origin)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			pieces, ok, err := parseFileParallel(path, o, workers)
			if err != nil {
				return nil, err
			}
			if ok {
				z, err := build(o, pieces...)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				z.File = path
				return z, nil
			}
			// something only a sequential parse gets right
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open zone file: %w", err)
	}
	defer f.Close()
	return Parse(f, path, origin)
}

// ParseBytes is Parse of text held in memory (a stored version): on
// several cores when it is large and shaped for it, like ParseFile.
func ParseBytes(b []byte, file, origin string) (*Zone, error) {
	if workers, ok := useParallel(int64(len(b))); ok {
		o, err := canonicalOrigin(origin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		pieces, ok, err := parseParallel(bytes.NewReader(b), file, o, workers, parallelChunk)
		if err != nil {
			return nil, err
		}
		if ok {
			z, err := build(o, pieces...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			z.File = file
			return z, nil
		}
	}
	return Parse(bytes.NewReader(b), file, origin)
}

// Parse is ParseFile's core: it reads presentation-format text from r;
// file is used only in error messages.
func Parse(r io.Reader, file, origin string) (*Zone, error) {
	o, err := canonicalOrigin(origin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	lr := &lineReader{br: bufio.NewReaderSize(r, 64*1024), line: 1}
	zp := dns.NewZoneParser(lr, o, file)
	zp.SetIncludeAllowed(false)
	var (
		rrs   []dns.RR
		lines []int
		texts = newTexter()
	)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
		lines = append(lines, lr.entryStart())
		texts.add(rr)
	}
	all := texts.wait()
	if err := zp.Err(); err != nil {
		return nil, parseError(file, err)
	}
	z, err := build(o, piece{rrs, lines, all})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	z.File = file
	return z, nil
}

// lineReader tells on which line each record began. miekg's lexer reads
// byte by byte from an io.ByteReader and returns a record as soon as it
// has read the newline that ends it, so when Next returns, the lines read
// so far end with that record. Its first line is the first line since the
// previous record that holds something other than blanks, a comment or a
// $ directive; continuation lines inside ( ) come after it.
type lineReader struct {
	br      *bufio.Reader
	line    int  // line of the next byte
	sawText bool // current line has non-blank text so far
	first   int  // first content line since the last entryStart; 0 if none
}

func (r *lineReader) Read(p []byte) (int, error) {
	// Only for io.Reader; the lexer uses ReadByte.
	n := 0
	for n < len(p) {
		c, err := r.ReadByte()
		if err != nil {
			return n, err
		}
		p[n] = c
		n++
	}
	return n, nil
}

func (r *lineReader) ReadByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err != nil {
		return c, err
	}
	switch {
	case c == '\n':
		r.line++
		r.sawText = false
	case c == ' ' || c == '\t' || c == '\r':
	case !r.sawText:
		r.sawText = true
		if c != ';' && c != '$' && r.first == 0 {
			r.first = r.line
		}
	}
	return c, nil
}

// entryStart returns the first line of the record just parsed and starts
// looking for the next one.
func (r *lineReader) entryStart() int {
	start := r.first
	if start == 0 {
		// several records from one line ($GENERATE): all start there
		start = r.line - 1
		if r.sawText {
			start = r.line
		}
	}
	r.first = 0
	return start
}

// texter computes records' canonical texts on another goroutine while
// the parser reads on: the lexer is sequential and leaves the other
// cores idle, and the texts (rr.String() for every record) are a fifth of
// the time of a parse.
type texter struct {
	batch []dns.RR
	in    chan []dns.RR
	out   chan []string
}

// texterBatch records go to the other goroutine at a time.
const texterBatch = 4096

func newTexter() *texter {
	t := &texter{in: make(chan []dns.RR, 16), out: make(chan []string, 1)}
	go func() {
		var all []string
		for b := range t.in {
			for _, rr := range b {
				all = append(all, canonicalText(rr))
			}
		}
		t.out <- all
	}()
	return t
}

func (t *texter) add(rr dns.RR) {
	if t.batch == nil {
		t.batch = make([]dns.RR, 0, texterBatch)
	}
	t.batch = append(t.batch, rr)
	if len(t.batch) == texterBatch {
		t.in <- t.batch
		t.batch = nil
	}
}

// wait returns the texts of every record added, in order.
func (t *texter) wait() []string {
	if len(t.batch) > 0 {
		t.in <- t.batch
	}
	close(t.in)
	return <-t.out
}

func textOf(texts []string, i int, rr dns.RR) string {
	if texts == nil {
		return canonicalText(rr)
	}
	return texts[i]
}

func lineOf(lines []int, i int) int {
	if lines == nil {
		return 0
	}
	return lines[i]
}

// SerialLess reports whether serial a is before serial b in RFC 1982
// sequence space arithmetic (SERIAL_BITS = 32). When the two are exactly
// 2^31 apart the order is undefined and SerialLess is false both ways, so
// a caller asking "is the new serial ahead?" gets "no" and refuses.
func SerialLess(a, b uint32) bool {
	return a != b && int32(b-a) > 0
}

// atLine matches the position miekg's ParseError appends to its message.
var atLine = regexp.MustCompile(`^(.*) at line: (\d+):(\d+)$`)

// parseError rewrites miekg's "file: dns: msg: token at line: L:C" into
// the conventional "file:L:C: msg: token", which editors and CI logs link.
func parseError(file string, err error) error {
	var pe *dns.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", file, err)
	}
	m := atLine.FindStringSubmatch(strings.TrimPrefix(pe.Error(), file+": "))
	if m == nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	line, _ := strconv.Atoi(m[2])
	col, _ := strconv.Atoi(m[3])
	msg := strings.TrimPrefix(m[1], "dns: ")
	return &SyntaxError{File: file, Line: line, Column: col, Msg: msg, Err: err}
}

// SyntaxError is a zone file syntax error with its position.
type SyntaxError struct {
	File         string
	Line, Column int
	Msg          string
	Err          error
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

func canonicalOrigin(origin string) (string, error) {
	if origin == "" {
		return "", errors.New("zone origin is empty")
	}
	o := dns.CanonicalName(origin)
	if _, ok := dns.IsDomainName(o); !ok {
		return "", fmt.Errorf("zone origin %q is not a domain name", origin)
	}
	return o, nil
}

// canonicalText is the digest line of one RR: its presentation text with
// the owner name lower-cased (owner names are case-insensitive and the
// wire may carry either case; RDATA is left alone because TXT and
// similar are case-sensitive).
func canonicalText(rr dns.RR) string {
	s := rr.String()
	if i := strings.IndexByte(s, '\t'); i > 0 {
		return strings.ToLower(s[:i]) + s[i:]
	}
	return s
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}
