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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
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
	return build(origin, rrs, nil)
}

// build is FromRecords with optional source lines (lines[i] for rrs[i]).
func build(origin string, rrs []dns.RR, lines []int) (*Zone, error) {
	origin, err := canonicalOrigin(origin)
	if err != nil {
		return nil, err
	}
	var soa *dns.SOA
	type entry struct {
		text string
		rr   dns.RR
		line int
	}
	entries := make([]entry, 0, len(rrs))
	for i, rr := range rrs {
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
				entries = append(entries, entry{canonicalText(s), s, lineOf(lines, i)})
			}
			continue
		}
		entries = append(entries, entry{canonicalText(rr), rr, lineOf(lines, i)})
	}
	if soa == nil {
		return nil, fmt.Errorf("zone %s: %w", origin, ErrNoSOA)
	}
	// Stable, so of two identical records the first in the file is kept
	// (and its line reported).
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].text < entries[j].text })

	z := &Zone{
		Origin:  origin,
		Serial:  soa.Serial,
		Records: make([]dns.RR, 0, len(entries)),
		Counts:  make(map[string]int),
	}
	z.Records = append(z.Records, soa)
	if lines != nil {
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
		case e.rr == dns.RR(soa) && lines != nil:
			z.Lines[0] = e.line
		case e.rr != dns.RR(soa):
			z.Records = append(z.Records, e.rr)
			if lines != nil {
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open zone file: %w", err)
	}
	defer f.Close()
	return Parse(f, path, origin)
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
	)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
		lines = append(lines, lr.entryStart())
	}
	if err := zp.Err(); err != nil {
		return nil, parseError(file, err)
	}
	z, err := build(o, rrs, lines)
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
