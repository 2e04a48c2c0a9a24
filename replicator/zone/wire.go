package zone

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Storage. A zone holds its records in DNS wire format without their
// owner names (type, class, TTL, RDLENGTH, RDATA: the owner is the name
// the record is filed under), packed one after the other in a few large
// byte slices (one per parse chunk), and decodes a record when asked for
// it. A miekg struct costs two to three times a
// record's wire size, and the records of a million-delegation zone are five
// million small objects the garbage collector must walk on every cycle;
// the byte slices hold no pointers, so it never looks inside them. This is
// what lets a check hold a whole TLD in less memory than Knot's
// kzonecheck (BENCHMARKS.md).

// maxRRWire bounds one record in wire format: a 255-octet owner, the
// fixed header and 65,535 octets of RDATA.
const maxRRWire = 255 + 10 + 65535

// pieceRecords is the most records a piece holds, so that a piece's byte
// offsets fit in 32 bits whatever the records.
const pieceRecords = 1 << 16

// piece is part of a zone's records in input order, packed.
type piece struct {
	arena []byte
	offs  []uint32 // where each record starts in arena
	lines []int32  // source line of each record; nil when not from a file
	owner []int32  // each record's owner, an index into owners
	// owners are the distinct owner names of the piece as NameKey gives
	// them, in order of first appearance.
	owners []string
	soas   []int32 // the records that are SOAs
}

func (p *piece) len() int { return len(p.offs) }

func (p *piece) line(i int32) int32 {
	if int(i) < len(p.lines) {
		return p.lines[i]
	}
	return 0
}

// rr decodes record i of the piece, owned by name.
func (p *piece) rr(i int, name string) (dns.RR, error) {
	return unpackAt(p.arena, int(p.offs[i]), name)
}

// unpackAt decodes the owner-less record at off in b.
func unpackAt(b []byte, off int, name string) (dns.RR, error) {
	h := dns.RR_Header{
		Name:     name,
		Rrtype:   binary.BigEndian.Uint16(b[off:]),
		Class:    binary.BigEndian.Uint16(b[off+2:]),
		Ttl:      binary.BigEndian.Uint32(b[off+4:]),
		Rdlength: binary.BigEndian.Uint16(b[off+8:]),
	}
	// Cut at the end of the RDATA, as miekg's UnpackRR does: some types
	// (TXT) read to the end of what they are given.
	rr, _, err := dns.UnpackRRWithHeader(h, b[:off+10+int(h.Rdlength)], off+10)
	return rr, err
}

// pieceBuilder packs records into a piece as they come.
type pieceBuilder struct {
	p        piece
	lastName string // h.Name of the last record added
	lastID   int32
	ids      map[string]int32
}

func newPieceBuilder(sizeHint int) *pieceBuilder {
	return &pieceBuilder{
		p:   piece{arena: make([]byte, 0, max(sizeHint, 2*maxRRWire))},
		ids: make(map[string]int32),
	}
}

// add packs rr; line is its source line (0 when there is none). The error
// names the record: one that cannot be put on the wire cannot be served.
func (b *pieceBuilder) add(rr dns.RR, line int) error {
	h := rr.Header()
	p := &b.p
	id := b.lastID
	if len(p.offs) == 0 || h.Name != b.lastName {
		key := NameKey(h.Name)
		var ok bool
		if id, ok = b.ids[key]; !ok {
			id = int32(len(p.owners))
			p.owners = append(p.owners, key)
			b.ids[key] = id
		}
		b.lastName, b.lastID = h.Name, id
	}
	off := len(p.arena)
	arena, err := appendOwnerless(p.arena, rr)
	if err != nil {
		return err
	}
	p.arena = arena
	if h.Rrtype == dns.TypeSOA {
		p.soas = append(p.soas, int32(len(p.offs)))
	}
	p.offs = append(p.offs, uint32(off))
	p.owner = append(p.owner, id)
	if line > 0 || p.lines != nil {
		for len(p.lines) < len(p.offs)-1 {
			p.lines = append(p.lines, 0)
		}
		p.lines = append(p.lines, int32(line))
	}
	return nil
}

// emptyRdataAllowed: types whose RDATA may be empty on the wire.
func emptyRdataAllowed(rr dns.RR) bool {
	switch rr.(type) {
	case *dns.RFC3597, *dns.APL, *dns.NULL, *dns.OPT:
		return true
	}
	return false
}

// appendOwnerless packs rr at the end of dst in the form a zone stores it
// (without its owner name, which is the name it is filed under) and
// returns the extended slice. The error names a record that cannot be
// stored: no owner name, no RDATA, or not encodable for the wire.
func appendOwnerless(dst []byte, rr dns.RR) ([]byte, error) {
	h := rr.Header()
	if h.Name == "" {
		// miekg packs an empty owner as nothing at all, not even the
		// root: there would be no owner to file the record under.
		return dst, fmt.Errorf("%s record has no owner name", typeName(h.Rrtype))
	}
	// Room for the largest record; measured only when short of it (a
	// piece's arena rarely is, a one-record buffer always).
	if cap(dst)-len(dst) < maxRRWire {
		if need := dns.Len(rr) + 1; cap(dst)-len(dst) < need {
			grown := make([]byte, len(dst), max(2*cap(dst), len(dst)+need))
			copy(grown, dst)
			dst = grown
		}
	}
	off := len(dst)
	end, err := dns.PackRR(rr, dst[:cap(dst)], off, nil, false)
	if err != nil {
		return dst, fmt.Errorf("%s %s record cannot be encoded for the wire: %w", h.Name, typeName(h.Rrtype), err)
	}
	if h.Rdlength == 0 && !emptyRdataAllowed(rr) { // PackRR set it
		// miekg reads "name A" with nothing after it as a record with
		// no RDATA (an UPDATE deletion): it cannot be served, and its
		// text does not parse back.
		return dst, fmt.Errorf("%s %s record has no RDATA", h.Name, typeName(h.Rrtype))
	}
	b := dst[:end]
	n := skipName(b, off) - off
	if rest := end - off - n; rest < 10 || int(binary.BigEndian.Uint16(b[off+n+8:]))+10 != rest {
		return dst, fmt.Errorf("%s %s record does not pack as a record", h.Name, typeName(h.Rrtype))
	}
	copy(b[off:], b[off+n:])
	return b[:end-n], nil
}

// full reports whether the piece should be closed before adding more.
func (b *pieceBuilder) full() bool { return len(b.p.offs) >= pieceRecords }

// done returns the piece, its arena trimmed when much of it is unused.
func (b *pieceBuilder) done() piece {
	p := b.p
	if cap(p.arena)-len(p.arena) > len(p.arena)/8 {
		p.arena = append([]byte(nil), p.arena...)
	}
	b.p, b.ids = piece{}, nil
	return p
}

// NameKey is the form in which regdr compares and indexes owner names:
// the presentation text miekg prints for the name as it comes off the
// wire, lower-cased (ASCII only: other bytes print as \DDD escapes, which
// have no case). Two spellings of one DNS name ("a\065." and "aA.") have
// the same key.
func NameKey(name string) string {
	plain := true
	for i := 0; i < len(name) && plain; i++ {
		c := name[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '*'
	}
	if !plain {
		var buf [256]byte
		if n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false); err == nil {
			if u, _, err := dns.UnpackDomainName(buf[:n], 0); err == nil {
				name = u
			}
		}
		s := (&dns.RR_Header{Name: name}).String()
		if i := strings.IndexByte(s, '\t'); i >= 0 {
			name = s[:i]
		}
	}
	return lowerASCII(name)
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// skipName returns the offset just past the uncompressed wire name at
// off in b.
func skipName(b []byte, off int) int {
	for off < len(b) {
		l := int(b[off])
		off++
		if l == 0 {
			return off
		}
		off += l
	}
	return off
}

// wireType is the type of the owner-less record at off in b.
func wireType(b []byte, off int) uint16 { return binary.BigEndian.Uint16(b[off:]) }

// wireCovered is the type an owner-less RRSIG record at off in b covers.
func wireCovered(b []byte, off int) uint16 { return binary.BigEndian.Uint16(b[off+10:]) }

// Builder builds a Zone from records handed over one at a time (a zone
// transfer as it arrives), packing each at once: the caller need not hold
// millions of decoded records until the last one is in.
type Builder struct {
	origin string
	pieces []piece
	b      *pieceBuilder
}

// NewBuilder starts a zone of origin.
func NewBuilder(origin string) *Builder {
	return &Builder{origin: origin, b: newPieceBuilder(1 << 20)}
}

// Add packs rr (nil is ignored); the error names a record that cannot be
// put on the wire.
func (b *Builder) Add(rr dns.RR) error {
	if rr == nil {
		return nil
	}
	if err := b.b.add(rr, 0); err != nil {
		return err
	}
	if b.b.full() {
		b.pieces = append(b.pieces, b.b.done())
		b.b = newPieceBuilder(1 << 20)
	}
	return nil
}

// Zone builds the zone of every record added, as FromRecords would.
func (b *Builder) Zone() (*Zone, error) {
	o, err := canonicalOrigin(b.origin)
	if err != nil {
		return nil, err
	}
	return build(o, append(b.pieces, b.b.done())...)
}
