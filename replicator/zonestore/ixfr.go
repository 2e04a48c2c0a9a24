package zonestore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Delta is what turns one stored version into another, in the shape of
// one IXFR difference sequence (RFC 1995 §4): FromSOA and the records to
// delete, then ToSOA and the records to add. Deleted and Added hold no
// SOA and are in canonical text order.
type Delta struct {
	FromSOA, ToSOA *dns.SOA
	Deleted, Added []dns.RR
}

// Len is the number of records the delta carries, both SOAs included.
func (d *Delta) Len() int { return len(d.Deleted) + len(d.Added) + 2 }

// ErrDeltaTooBig is returned (wrapped) by Delta when the difference has
// at least as many records as the new version: sending it would cost
// more than the whole zone.
var ErrDeltaTooBig = errors.New("difference is not smaller than the zone")

// deltaCacheSize is how many deltas a Store keeps in memory. Secondaries
// ask for the same few steps (the one from the previous serial, mostly)
// right after each NOTIFY; a handful covers a fleet of them.
const deltaCacheSize = 8

// deltaCache holds recent deltas keyed by the two digests (content
// addressed, so an entry is never stale).
type deltaCache struct {
	mu    sync.Mutex
	order []string
	byKey map[string]*Delta
}

func (c *deltaCache) get(k string) *Delta {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[k]
}

func (c *deltaCache) put(k string, d *Delta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil {
		c.byKey = map[string]*Delta{}
	}
	if _, ok := c.byKey[k]; ok {
		return
	}
	if len(c.order) == deltaCacheSize {
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
	c.order = append(c.order, k)
	c.byKey[k] = d
}

// Delta computes the difference from origin's stored version from to the
// version to (normally the one being served, which the agent has stored
// before serving it). It works on the stored canonical text, not on
// parsed zones: both objects are sorted lines, so one streaming merge of
// the two files finds the changed lines and only those are parsed. On a
// 1,000,000-delegation zone that is a read and a hash of each file
// instead of two full parses, in constant memory but for the delta.
//
// The error wraps ErrNotFound when from is not stored (pruned, or never
// seen here), ErrSerialReused when from is ambiguous, ErrCorrupt when an
// object does not hash to its digest, and ErrDeltaTooBig when the
// difference is not smaller than to.
func (s *Store) Delta(ctx context.Context, origin string, from uint32, to *zone.Zone) (*Delta, error) {
	if to == nil || to.Len() == 0 {
		return nil, errors.New("zone delta: no target version")
	}
	origin, _, err := canonicalOrigin(origin)
	if err != nil {
		return nil, fmt.Errorf("zone delta: %w", err)
	}
	what := fmt.Sprintf("zone %s delta %d -> %d", origin, from, to.Serial)
	if to.Origin != origin {
		return nil, fmt.Errorf("%s: target version is zone %s", what, to.Origin)
	}
	if from == to.Serial {
		return nil, fmt.Errorf("%s: same serial", what)
	}
	m, err := s.Get(origin, from)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	key := m.Digest + ">" + to.Digest
	if d := s.deltas.get(key); d != nil {
		return d, nil
	}
	old, err := openObject(s.objectPath(m.Digest), m.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer old.Close()
	cur, err := openObject(s.objectPath(to.Digest), to.Digest)
	if errors.Is(err, os.ErrNotExist) {
		// Not stored (yet): its text is computed from the records.
		cur, err = textObject(canonicalBytes(to), to.Digest), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer cur.Close()
	d, err := diffLines(ctx, old, cur, to.Len())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Only now is it known that every byte read was the stored version.
	for _, o := range []*object{old, cur} {
		if err := o.check(); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if d.FromSOA == nil || d.ToSOA == nil || d.FromSOA.Serial != from || d.ToSOA.Serial != to.Serial {
		return nil, fmt.Errorf("%s: %w: stored texts do not hold the SOAs of serials %d and %d", what, ErrCorrupt, from, to.Serial)
	}
	s.deltas.put(key, d)
	return d, nil
}

// object is a stored version's text read line by line, hashed on the
// way so that its digest is checked without holding the whole file (a
// 1,000,000-delegation zone is over 400 MB of text).
type object struct {
	path   string
	digest string
	f      *os.File
	sc     *bufio.Scanner
	h      zone.TextHasher
	n      int64
	err    error
}

func openObject(path, digest string) (*object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read object: %w", err)
	}
	o := &object{path: path, digest: digest, f: f}
	o.sc = bufio.NewScanner(f)
	o.sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	return o, nil
}

// textObject is an object over text already in memory.
func textObject(text []byte, digest string) *object {
	o := &object{path: "(computed)", digest: digest}
	o.sc = bufio.NewScanner(bytes.NewReader(text))
	o.sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	return o
}

// next returns the next line without its newline, or nil at the end.
func (o *object) next() []byte {
	if o.sc.Scan() {
		o.n += int64(len(o.sc.Bytes())) + 1
		o.h.Line(o.sc.Bytes())
		return o.sc.Bytes()
	}
	o.err = o.sc.Err()
	return nil
}

// check reports an object that could not be read to its end or whose
// bytes do not hash to its digest. Call after next returned nil.
func (o *object) check() error {
	if o.err != nil {
		return fmt.Errorf("object %s: %w: %w", o.path, ErrCorrupt, o.err)
	}
	if sum := o.h.Sum(); sum != o.digest {
		return fmt.Errorf("object %s: %w: %d bytes hash to %s, want %s", o.path, ErrCorrupt, o.n, sum, o.digest)
	}
	return nil
}

func (o *object) Close() error {
	if o.f == nil {
		return nil
	}
	return o.f.Close()
}

// diffLines merges two canonical texts (sorted, distinct lines) and
// parses the lines only one of them has. It gives up with ErrDeltaTooBig
// once the difference reaches limit records. A line that does not parse
// is ErrCorrupt (the texts are checked against their digests after).
func diffLines(ctx context.Context, old, cur *object, limit int) (*Delta, error) {
	d := &Delta{}
	n := 0
	take := func(line []byte, added bool) error {
		n++
		if n >= limit {
			return ErrDeltaTooBig
		}
		rr, err := dns.NewRR(string(line))
		if err != nil || rr == nil {
			return fmt.Errorf("%w: stored line %q does not parse: %v", ErrCorrupt, line, err)
		}
		soa, isSOA := rr.(*dns.SOA)
		switch {
		case isSOA && added:
			d.ToSOA = soa
		case isSOA:
			d.FromSOA = soa
		case added:
			d.Added = append(d.Added, rr)
		default:
			d.Deleted = append(d.Deleted, rr)
		}
		return nil
	}
	// The scanners reuse their buffers: compare, then advance.
	la, lb := old.next(), cur.next()
	for steps := 0; la != nil || lb != nil; steps++ {
		if steps%65536 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var err error
		switch c := compareLines(la, lb); {
		case c < 0:
			err = take(la, false)
			la = old.next()
		case c > 0:
			err = take(lb, true)
			lb = cur.next()
		default:
			la, lb = old.next(), cur.next()
		}
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// compareLines orders lines as sort.Strings ordered them when the object
// was written (lines compared without their newline); nil is past the end.
func compareLines(a, b []byte) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

// Diff implements zoneserve.History: the IXFR difference from origin's
// stored version from to the served version to. ok is false, with a nil
// error, when from is not stored here or the difference would not be
// smaller than the zone; the server then sends the whole zone.
func (s *Store) Diff(ctx context.Context, origin string, from uint32, to *zone.Zone) (fromSOA *dns.SOA, deleted, added []dns.RR, ok bool, err error) {
	if s == nil {
		// A site without a store (a nil *Store in the interface) has
		// no history: whole zones only.
		return nil, nil, nil, false, nil
	}
	d, err := s.Delta(ctx, origin, from, to)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrDeltaTooBig):
		return nil, nil, nil, false, nil
	case err != nil:
		return nil, nil, nil, false, err
	}
	return d.FromSOA, d.Deleted, d.Added, true, nil
}
