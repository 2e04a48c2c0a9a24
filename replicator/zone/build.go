package zone

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/miekg/dns"
)

// Building a zone from packed pieces. The records are put in order by
// owner name first (each canonical text line starts with the owner, and
// the tab after it sorts below any character a name prints with, so lines
// sort by owner before anything else), then each owner's few records are
// turned to text, sorted and hashed on their own, on every core, with only
// a bounded window of texts alive at a time: five million texts are never
// held, nor sorted, at once. The per-name hashes are kept: a version that
// differs from another by a few names (Apply) hashes only those again.

// ownerRef is one distinct owner of one piece.
type ownerRef struct {
	key   string
	piece int32
	local int32
}

// recRef is record idx of piece p, while building.
type recRef struct {
	p   int32
	idx int32
}

// build makes a Zone of the records of pieces, in order. Either every
// piece has lines or none has.
func build(origin string, pieces ...piece) (*Zone, error) {
	origin, err := canonicalOrigin(origin)
	if err != nil {
		return nil, err
	}
	okey := NameKey(origin)

	// The SOA: exactly one (identical copies allowed), at the apex.
	var soa *dns.SOA
	for pi := range pieces {
		p := &pieces[pi]
		for _, si := range p.soas {
			rr, err := p.rr(int(si), p.owners[p.owner[si]])
			if err != nil {
				return nil, fmt.Errorf("zone %s: decode SOA: %w", origin, err)
			}
			s, ok := rr.(*dns.SOA)
			if !ok {
				return nil, fmt.Errorf("zone %s: SOA record decodes as %T", origin, rr)
			}
			if p.owners[p.owner[si]] != okey {
				return nil, fmt.Errorf("zone %s: %w: owner %s", origin, ErrSOANotAtOrigin, s.Hdr.Name)
			}
			if soa != nil && !dns.IsDuplicate(soa, s) {
				return nil, fmt.Errorf("zone %s: %w (serials %d and %d)", origin, ErrSeveralSOA, soa.Serial, s.Serial)
			}
			if soa == nil {
				soa = s
			}
		}
	}
	if soa == nil {
		return nil, fmt.Errorf("zone %s: %w", origin, ErrNoSOA)
	}

	// Owners in order: every piece's distinct owners, sorted by key; the
	// same name in two pieces gets one rank.
	var refs []ownerRef
	total := 0
	for pi := range pieces {
		for li, k := range pieces[pi].owners {
			refs = append(refs, ownerRef{k, int32(pi), int32(li)})
		}
		total += pieces[pi].len()
	}
	workers := runtime.GOMAXPROCS(0)
	parallelSort(refs, workers, func(a, b ownerRef) int { return strings.Compare(a.key, b.key) })
	rankOf := make([][]int32, len(pieces))
	for pi := range pieces {
		rankOf[pi] = make([]int32, len(pieces[pi].owners))
	}
	var names []string
	for i, r := range refs {
		if i == 0 || r.key != refs[i-1].key {
			names = append(names, r.key)
		}
		rankOf[r.piece][r.local] = int32(len(names) - 1)
	}
	refs = nil

	// Records grouped by owner, in input order within each owner: a
	// counting sort on the owner's rank.
	start := make([]int32, len(names)+1)
	for pi := range pieces {
		for _, o := range pieces[pi].owner {
			start[rankOf[pi][o]+1]++
		}
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	grouped := make([]recRef, total)
	next := slices.Clone(start[:len(names)])
	for pi := range pieces {
		p := &pieces[pi]
		for i, o := range p.owner {
			r := rankOf[pi][o]
			grouped[next[r]] = recRef{int32(pi), int32(i)}
			next[r]++
		}
		p.owner = nil // done with; the pieces' largest part after the arena
	}
	next, rankOf = nil, nil

	z := &Zone{Origin: origin, Serial: soa.Serial, Counts: make(map[string]int)}
	if err := z.digestAndOrder(pieces, names, start, grouped, workers); err != nil {
		return nil, fmt.Errorf("zone %s: %w", origin, err)
	}
	z.apex, _ = z.FindName(okey) // there: the SOA is filed under it
	return z, nil
}

// span is a range of owners handled as one unit of work.
type span struct {
	from, to int                 // owner ranks
	hashes   [][sha256.Size]byte // per owner, from..to-1
	kept     []recRef            // records kept (duplicates dropped), in order
	keptRank []int32             // the owner rank of each kept record
	counts   map[uint16]int
	soa      int // index in kept of the SOA, or -1
	err      error
	done     chan struct{}
}

// digestAndOrder sorts each owner's records by canonical text, drops
// duplicates, hashes the texts in order and fills z's storage.
func (z *Zone) digestAndOrder(pieces []piece, names []string, start []int32, grouped []recRef, workers int) error {
	// Spans of about spanRecords records, worked on by workers goroutines
	// at most 2×workers spans ahead of the hash.
	const spanRecords = 1 << 15
	var spans []*span
	for from := 0; from < len(names); {
		to := from + 1
		for to < len(names) && start[to]-start[from] < spanRecords {
			to++
		}
		spans = append(spans, &span{from: from, to: to, soa: -1, done: make(chan struct{})})
		from = to
	}
	work := make(chan *span)
	ahead := make(chan struct{}, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				s.run(pieces, names, start, grouped)
				close(s.done)
			}
		}()
	}
	go func() {
		for _, s := range spans {
			ahead <- struct{}{}
			work <- s
		}
		close(work)
	}()

	lines := false
	for i := range pieces {
		lines = lines || pieces[i].lines != nil
	}
	z.nameStart = make([]int32, len(names)+1)
	z.refs = make([]uint64, 1, len(grouped))
	if lines {
		z.lines = make([]int32, 1, len(grouped))
	}
	counts := make(map[uint16]int)
	z.nameHash = make([][sha256.Size]byte, len(names))
	var firstErr error
	for _, s := range spans {
		<-s.done
		<-ahead
		if firstErr == nil && s.err != nil {
			firstErr = s.err
		}
		if firstErr != nil {
			continue
		}
		copy(z.nameHash[s.from:s.to], s.hashes)
		for t, n := range s.counts {
			counts[t] += n
		}
		k := 0
		for r := s.from; r < s.to; r++ {
			z.nameStart[r] = int32(len(z.refs))
			for k < len(s.kept) && int(s.keptRank[k]) == r {
				ref := s.kept[k]
				p := &pieces[ref.p]
				if k == s.soa {
					z.refs[0] = uint64(ref.p)<<32 | uint64(p.offs[ref.idx])
					if lines {
						z.lines[0] = p.line(ref.idx)
					}
				} else {
					z.refs = append(z.refs, uint64(ref.p)<<32|uint64(p.offs[ref.idx]))
					if lines {
						z.lines = append(z.lines, p.line(ref.idx))
					}
				}
				k++
			}
		}
		s.hashes, s.kept, s.keptRank = nil, nil, nil
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	z.nameStart[len(names)] = int32(len(z.refs))
	z.Digest = digestOf(z.nameHash)
	for t, n := range counts {
		z.Counts[typeName(t)] += n
	}
	z.names = packStrings(names)
	z.arenas = make([][]byte, len(pieces))
	for i := range pieces {
		z.arenas[i] = pieces[i].arena
		z.wire += len(pieces[i].arena)
	}
	return nil
}

// run turns the span's records to text, owner by owner, sorted, without
// duplicates.
func (s *span) run(pieces []piece, names []string, start []int32, grouped []recRef) {
	type line struct {
		text string
		ref  recRef
	}
	s.counts = make(map[uint16]int)
	s.hashes = make([][sha256.Size]byte, 0, s.to-s.from)
	var (
		buf  []line
		text []byte
	)
	for r := s.from; r < s.to; r++ {
		text = text[:0]
		buf = buf[:0]
		for _, ref := range grouped[start[r]:start[r+1]] {
			rr, err := pieces[ref.p].rr(int(ref.idx), names[r])
			if err != nil {
				s.err = fmt.Errorf("decode record: %w", err)
				return
			}
			buf = append(buf, line{CanonicalText(rr), ref})
		}
		// Stable: of two identical records the first in the input is
		// kept (and its line reported).
		slices.SortStableFunc(buf, func(a, b line) int { return strings.Compare(a.text, b.text) })
		for i, l := range buf {
			if i > 0 && l.text == buf[i-1].text {
				continue
			}
			text = append(text, l.text...)
			text = append(text, '\n')
			p := &pieces[l.ref.p]
			t := wireType(p.arena, int(p.offs[l.ref.idx]))
			if t == dns.TypeSOA {
				s.soa = len(s.kept)
			}
			s.counts[t]++
			s.kept = append(s.kept, l.ref)
			s.keptRank = append(s.keptRank, int32(r))
		}
		s.hashes = append(s.hashes, sha256.Sum256(text))
	}
}

// digestOf is the zone digest of the per-name hashes, in name order.
func digestOf(nameHash [][sha256.Size]byte) string {
	h := sha256.New()
	for i := range nameHash {
		h.Write(nameHash[i][:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TextDigest is the digest (Zone.Digest) of a zone's canonical text: one
// line per record, sorted and distinct, each ending in "\n", as the zone
// store keeps a version. It is how a stored copy is checked without
// parsing it.
func TextDigest(text []byte) string {
	var h TextHasher
	for len(text) > 0 {
		nl := bytes.IndexByte(text, '\n')
		if nl < 0 {
			nl = len(text)
		}
		h.Line(text[:nl])
		text = text[min(nl+1, len(text)):]
	}
	return h.Sum()
}

// TextHasher computes TextDigest line by line, for text too large to hold.
type TextHasher struct {
	outer, name hash.Hash
	owner       []byte // the current name's owner text and tab
}

// Line adds one line of canonical text, without its newline.
func (h *TextHasher) Line(line []byte) {
	if h.outer == nil {
		h.outer, h.name = sha256.New(), sha256.New()
	}
	if len(h.owner) == 0 || !bytes.HasPrefix(line, h.owner) {
		h.flush()
		tab := bytes.IndexByte(line, '\t')
		if tab < 0 {
			tab = len(line) - 1
		}
		h.owner = append(h.owner[:0], line[:tab+1]...)
	}
	h.name.Write(line)
	h.name.Write([]byte{'\n'})
}

func (h *TextHasher) flush() {
	if len(h.owner) > 0 {
		h.outer.Write(h.name.Sum(nil))
		h.name.Reset()
	}
}

// Sum is the digest of the lines added so far.
func (h *TextHasher) Sum() string {
	if h.outer == nil {
		h.outer, h.name = sha256.New(), sha256.New()
	}
	h.flush()
	h.owner = h.owner[:0]
	return hex.EncodeToString(h.outer.Sum(nil))
}

// parallelSort sorts s by cmp on every core: each part on its own, then
// merged pairwise.
func parallelSort[T any](s []T, parts int, cmp func(a, b T) int) {
	if parts < 2 || len(s) < 1<<16 {
		slices.SortFunc(s, cmp)
		return
	}
	bounds := make([]int, parts+1)
	for i := range bounds {
		bounds[i] = len(s) * i / parts
	}
	var wg sync.WaitGroup
	for i := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slices.SortFunc(s[bounds[i]:bounds[i+1]], cmp)
		}()
	}
	wg.Wait()
	tmp := make([]T, len(s))
	for width := 1; width < parts; width *= 2 {
		for i := 0; i+width < parts; i += 2 * width {
			lo, mid, hi := bounds[i], bounds[i+width], bounds[min(i+2*width, parts)]
			mergeSorted(tmp[lo:hi], s[lo:mid], s[mid:hi], cmp)
			copy(s[lo:hi], tmp[lo:hi])
		}
	}
}

func mergeSorted[T any](dst, a, b []T, cmp func(a, b T) int) {
	k := 0
	for len(a) > 0 && len(b) > 0 {
		if cmp(b[0], a[0]) < 0 {
			dst[k], b = b[0], b[1:]
		} else {
			dst[k], a = a[0], a[1:]
		}
		k++
	}
	k += copy(dst[k:], a)
	copy(dst[k:], b)
}

// packStrings copies the strings of s into one allocation and returns s
// pointing there: a million owner names as one object instead of a
// million, for the garbage collector to skip over.
func packStrings(s []string) []string {
	total := 0
	for _, x := range s {
		total += len(x)
	}
	if total == 0 {
		return s
	}
	buf := make([]byte, 0, total)
	for i, x := range s {
		off := len(buf)
		buf = append(buf, x...)
		if len(x) > 0 {
			// buf never grows past its capacity, so it is never moved.
			s[i] = unsafe.String(&buf[off], len(x))
		}
	}
	return s
}
