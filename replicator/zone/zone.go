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
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Zone is one version of one zone.
//
// Its records are reached through Len, RR and All, not a slice: how they
// are held is the zone's business (a million-delegation zone is five
// million records, and holding each as a miekg struct costs several times
// the zone's wire size).
type Zone struct {
	// Origin is the zone apex, lower case, fully qualified.
	Origin string
	// Serial is the SOA serial of this version.
	Serial uint32
	// Digest is the hex SHA-256 over the SHA-256 of each owner name's
	// records, in name order (the order of Name). A name's hash is over
	// its records' canonical text: one line per RR (rr.String() with the
	// owner name lower-cased), duplicates removed, lines sorted, each
	// ending in "\n" (TextDigest computes it from such text, which is how
	// the zone store keeps a version). Two versions with equal digests
	// hold the same records with the same TTLs; case differences inside
	// RDATA names count as differences, which errs on the side of
	// flagging a change. Hashing per name lets Apply hash again only the
	// names a difference touches.
	Digest string
	// Counts is the number of RRs per type mnemonic ("NS", "DS", ...).
	Counts map[string]int
	// File is the file the zone was parsed from ("" for zones built from
	// records, e.g. a transfer); Line gives each record's line in it.
	File string

	// Every record exactly once, packed (wire.go): refs[i] is record i,
	// the arena (high 32 bits) and offset (low) where it starts. Record
	// 0 is the SOA, the rest follow in the order of their canonical text
	// (see Digest).
	refs   []uint64
	arenas [][]byte
	// lines[i] is the line on which record i begins in File; nil when
	// not from a file.
	lines []int32
	// names are the distinct owner names (NameKey) in sorted order;
	// the records of names[k] are nameStart[k] to nameStart[k+1]-1, and
	// the SOA (record 0) besides for the apex.
	names     []string
	nameStart []int32
	nameHash  [][sha256.Size]byte // per name, see Digest
	// wire is the size of the records themselves; the arenas may hold
	// more (records of earlier versions Apply no longer refers to).
	wire int
	apex int // position of the origin in names
}

// Len is the number of records in the zone, SOA included.
func (z *Zone) Len() int { return len(z.refs) }

// RR returns record i (0 <= i < Len): the SOA first, then the rest in
// the order of their canonical text. Each call decodes a new value, which
// the caller may keep or modify.
func (z *Zone) RR(i int) dns.RR {
	ref := z.refs[i]
	rr, err := unpackAt(z.arenas[ref>>32], int(uint32(ref)), z.names[z.nameOf(i)])
	if err != nil {
		// Every record was decoded once when the zone was built.
		panic(fmt.Sprintf("zone %s: record %d no longer decodes: %v", z.Origin, i, err))
	}
	return rr
}

// nameOf is the position in names of record i's owner.
func (z *Zone) nameOf(i int) int {
	if i == 0 {
		return z.apex
	}
	// the last name whose records start at or before i
	return sort.Search(len(z.names), func(k int) bool { return int(z.nameStart[k+1]) > i })
}

// Raw returns record i in wire format without its owner name: TYPE,
// CLASS, TTL, RDLENGTH and RDATA (uncompressed), as a window of the zone's
// own storage that the caller must not modify. For code that works on the
// wire form (signature verification, comparisons) without decoding.
func (z *Zone) Raw(i int) []byte {
	ref := z.refs[i]
	b, off := z.arenas[ref>>32], int(uint32(ref))
	n := 10 + int(binary.BigEndian.Uint16(b[off+8:]))
	return b[off : off+n : off+n]
}

// SameRecord reports whether record i of a and record j of b are the
// same record, TTL included: at once when b was made from a by Apply and
// the record was not touched (they share storage), byte by byte
// otherwise.
func SameRecord(a *Zone, i int, b *Zone, j int) bool {
	ra, rb := a.refs[i], b.refs[j]
	if ra == rb {
		x, y := a.arenas[ra>>32], b.arenas[rb>>32]
		if len(x) > 0 && len(y) > 0 && &x[0] == &y[0] {
			return true
		}
	}
	return bytes.Equal(a.Raw(i), b.Raw(j))
}

// Type is the type of record i, read without decoding the record.
func (z *Zone) Type(i int) uint16 {
	ref := z.refs[i]
	return wireType(z.arenas[ref>>32], int(uint32(ref)))
}

// Covered is the type an RRSIG record i covers, read without decoding
// it; dns.TypeNone when record i is not an RRSIG.
func (z *Zone) Covered(i int) uint16 {
	ref := z.refs[i]
	b, off := z.arenas[ref>>32], int(uint32(ref))
	if wireType(b, off) != dns.TypeRRSIG {
		return dns.TypeNone
	}
	return wireCovered(b, off)
}

// All yields every record with its position, in the order of RR.
func (z *Zone) All() iter.Seq2[int, dns.RR] {
	return func(yield func(int, dns.RR) bool) {
		for i := range z.refs {
			if !yield(i, z.RR(i)) {
				return
			}
		}
	}
}

// RRs returns every record in a new slice, in the order of RR. For small
// zones and tests: a large zone is better walked with All.
func (z *Zone) RRs() []dns.RR {
	out := make([]dns.RR, 0, z.Len())
	for _, rr := range z.All() {
		out = append(out, rr)
	}
	return out
}

// Line is the line of File on which record i begins, or 0 when the zone
// was not parsed from a file.
func (z *Zone) Line(i int) int {
	if i < 0 || i >= len(z.lines) {
		return 0
	}
	return int(z.lines[i])
}

// SOA returns the zone's SOA record.
func (z *Zone) SOA() *dns.SOA { return z.RR(0).(*dns.SOA) }

// Names is the number of distinct owner names in the zone.
func (z *Zone) Names() int { return len(z.names) }

// Name returns owner name k (0 <= k < Names) as NameKey gives it, and the
// records it owns: from start to end-1, plus record 0 (the SOA) for the
// apex. Names come in sorted order (byte order of their keys), so all
// records of a name are together.
func (z *Zone) Name(k int) (name string, start, end int) {
	return z.names[k], int(z.nameStart[k]), int(z.nameStart[k+1])
}

// FindName returns the position of the owner name with key (NameKey) in
// Names order, if the zone has records there.
func (z *Zone) FindName(key string) (int, bool) {
	return slices.BinarySearch(z.names, key)
}

// ErrNoSOA and ErrSeveralSOA are returned (wrapped) for a zone without
// exactly one SOA record; ErrSOANotAtOrigin when its owner is not the apex.
var (
	ErrNoSOA          = errors.New("zone has no SOA record")
	ErrSeveralSOA     = errors.New("zone has more than one SOA record")
	ErrSOANotAtOrigin = errors.New("SOA record is not at the zone origin")
)

// FromRecords builds a Zone from rrs. The records are copied (packed):
// the caller may do what it likes with rrs afterwards. Exact duplicates are
// dropped (an RRset is a set, and every secondary would drop them too, so
// keeping them would make the digest of a transferred copy differ from
// the original).
func FromRecords(origin string, rrs []dns.RR) (*Zone, error) {
	o, err := canonicalOrigin(origin)
	if err != nil {
		return nil, err
	}
	// Packed in pieces, on every core.
	n := (len(rrs) + pieceRecords - 1) / pieceRecords
	pieces := make([]piece, max(n, 1))
	errs := make([]error, len(pieces))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range pieces {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			part := rrs[min(i*pieceRecords, len(rrs)):min((i+1)*pieceRecords, len(rrs))]
			b := newPieceBuilder(len(part) * 64)
			for _, rr := range part {
				if rr == nil {
					continue
				}
				if err := b.add(rr, 0); err != nil {
					errs[i] = err
					return
				}
			}
			pieces[i] = b.done()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("zone %s: %w", o, err)
		}
	}
	return build(o, pieces...)
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
	var pieces []piece
	b := newPieceBuilder(1 << 20)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		line := lr.entryStart()
		if err := b.add(rr, line); err != nil {
			return nil, &SyntaxError{File: file, Line: line, Column: 1, Msg: err.Error(), Err: err}
		}
		if b.full() {
			pieces = append(pieces, b.done())
			b = newPieceBuilder(1 << 20)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, parseError(file, err)
	}
	pieces = append(pieces, b.done())
	z, err := build(o, pieces...)
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

// CanonicalText is the digest line of one RR: its presentation text with
// the owner name lower-cased (owner names are case-insensitive and the
// wire may carry either case; RDATA is left alone because TXT and
// similar are case-sensitive).
func CanonicalText(rr dns.RR) string {
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
