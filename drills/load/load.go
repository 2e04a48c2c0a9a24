// Package load is the write-load generator behind `regdr lab load` and the
// drills: it issues registry operations (register, update name servers,
// delete) at a steady rate and records every acknowledged write, after its
// COMMIT, in a JSON-lines journal. After a switchover or failover, Check
// compares that history with the registry's own journal: an acknowledged
// write that is missing was lost (RPO), a write in the database that nobody
// acknowledged is unexpected, and the longest gap between acks is the
// outage clients saw (RTO).
//
// The generator only touches domains it created itself, named
// <prefix>-<n>; the prefix is per run, so runs do not disturb each other or
// the bulk-loaded registry.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/registry"
)

// Mix weighs the operations; only the ratios matter. Updates and deletes
// need a domain this run registered; until there is one they become
// registrations.
type Mix struct {
	Register, Update, Delete float64
}

// DefaultMix keeps the run's domain count growing (so updates and deletes
// always have targets) while still exercising every kind of change.
func DefaultMix() Mix { return Mix{Register: 0.6, Update: 0.3, Delete: 0.1} }

// Options configure a run.
type Options struct {
	// ConnString reaches the registry database (libpq keyword/value or
	// URL). It may list both sites' hosts with
	// target_session_attrs=read-write, so reconnecting finds the new
	// primary after a failover.
	ConnString string
	// TLD is the registry's TLD; the name servers the load uses are
	// chosen outside it (they need no glue).
	TLD string
	// Rate is writes per second, across all workers.
	Rate float64
	// Workers is the number of connections issuing writes; default 4.
	// A write's latency caps one worker's rate, so a higher Rate needs
	// more workers.
	Workers int
	// Journal receives the records; if it is nil, JournalPath is opened
	// for appending (created 0644). If the writer has Sync() error (as
	// *os.File does) it is synced at least every 100 ms and on exit.
	Journal     io.Writer
	JournalPath string
	// Mix of operations; zero means DefaultMix().
	Mix Mix
	// Seed makes the operation sequence repeatable; 0 takes the clock.
	Seed uint64
	// Prefix names the run's domains (<prefix>-<n>); default "ld"
	// followed by the seed in base 36.
	Prefix string
	// OpTimeout bounds one operation, connecting included; default 5 s.
	// An operation in flight when the run is cancelled still gets this
	// long to finish, so the run stops between writes, not inside one.
	OpTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// OnRecord, if set, sees every record as it is written; OnError every
	// failed operation. Both are called from worker goroutines
	// concurrently and must not block.
	OnRecord func(Record)
	OnError  func(op, domain string, err error)
}

// Stats summarise a run.
type Stats struct {
	Prefix    string
	Acked     int64            // writes acknowledged (and recorded)
	ByOp      map[string]int64 // acknowledged writes per operation
	Errors    int64            // failed operations, uncertain ones included
	Uncertain int64            // COMMITs without an answer (recorded with an error)
	FirstID   int64            // lowest acknowledged registry journal id
	LastID    int64            // highest acknowledged registry journal id
	// Reconnects counts connections opened after a worker's first.
	Reconnects int64
	Started    time.Time
	Stopped    time.Time
	// LongestGap is the longest time without an acknowledged write
	// (from the start, between acks, and to the end): the write outage
	// clients saw.
	LongestGap time.Duration
}

// Operation names, as in the registry journal's op column.
const (
	OpRegister = "register"
	OpUpdate   = "update-ns"
	OpDelete   = "delete"
)

func (o *Options) fill() error {
	if o.ConnString == "" {
		return errors.New("load: no connection string")
	}
	if strings.Trim(o.TLD, ".") == "" {
		return errors.New("load: no TLD")
	}
	if !(o.Rate > 0) || o.Rate > 1e6 {
		return fmt.Errorf("load: rate %v writes/s: want more than 0 and at most 1e6", o.Rate)
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Workers < 0 || o.Workers > 256 {
		return fmt.Errorf("load: %d workers: want 1..256", o.Workers)
	}
	if o.Journal == nil && o.JournalPath == "" {
		return errors.New("load: no journal writer or path")
	}
	if o.Mix == (Mix{}) {
		o.Mix = DefaultMix()
	}
	if o.Mix.Register < 0 || o.Mix.Update < 0 || o.Mix.Delete < 0 {
		return fmt.Errorf("load: negative weight in mix %+v", o.Mix)
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Prefix == "" {
		o.Prefix = "ld" + strconv.FormatUint(o.Seed, 36)
	}
	if !validPrefix(o.Prefix) {
		return fmt.Errorf("load: prefix %q: want lower-case letters and digits, starting with a letter, at most 40", o.Prefix)
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

func validPrefix(p string) bool {
	if p == "" || len(p) > 40 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for _, c := range []byte(p) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Run issues writes until ctx is cancelled, then returns what happened.
// Database errors never stop it: it counts them, backs off and reconnects.
// It returns an error only for bad options or when it cannot record an
// acknowledged write (the history would be wrong).
func Run(ctx context.Context, opts Options) (Stats, error) {
	if err := opts.fill(); err != nil {
		return Stats{}, err
	}
	out := opts.Journal
	if out == nil {
		f, err := os.OpenFile(opts.JournalPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return Stats{}, fmt.Errorf("load: open journal: %w", err)
		}
		defer f.Close()
		out = f
	}
	r := &runner{
		opts:  opts,
		jw:    newJournalWriter(out),
		rng:   rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		live:  newDomainSet(),
		start: time.Now(),
	}
	r.lastAck.Store(r.start.UnixNano())
	r.stats = Stats{Prefix: opts.Prefix, ByOp: map[string]int64{}, Started: r.start}
	opts.Logger.Info("load starting", "prefix", opts.Prefix, "rate", opts.Rate, "workers", opts.Workers, "seed", opts.Seed)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	tokens := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { pace(runCtx, opts.Rate, tokens) })
	for range opts.Workers {
		wg.Go(func() { r.work(runCtx, tokens, stop) })
	}
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				if err := r.jw.flush(); err != nil {
					r.fail(err)
					stop()
					return
				}
			}
		}
	}()
	wg.Wait()
	stop()
	<-flushDone
	if err := r.jw.flush(); err != nil {
		r.fail(err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.Stopped = time.Now()
	if gap := st.Stopped.Sub(time.Unix(0, r.lastAck.Load())); gap > st.LongestGap {
		st.LongestGap = gap
	}
	opts.Logger.Info("load stopped", "prefix", st.Prefix, "acked", st.Acked, "errors", st.Errors,
		"uncertain", st.Uncertain, "longest_gap", st.LongestGap)
	return st, r.err
}

// pace sends one token per 1/rate seconds. It schedules from the previous
// slot, not from when a worker took the token, so the rate holds under
// latency; after a stall (every worker blocked on a dead database) it
// restarts from now instead of bursting to catch up.
func pace(ctx context.Context, rate float64, tokens chan<- struct{}) {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		select {
		case <-ctx.Done():
			return
		case tokens <- struct{}{}:
		}
		next = nextSlot(next, time.Now(), interval)
	}
}

// maxBacklog is how far pacing may fall behind before it gives up on the
// missed slots.
const maxBacklog = time.Second

func nextSlot(prev, now time.Time, interval time.Duration) time.Time {
	next := prev.Add(interval)
	if now.Sub(next) > maxBacklog {
		return now
	}
	return next
}

type runner struct {
	opts    Options
	jw      *journalWriter
	live    *domainSet
	seq     atomic.Int64
	lastAck atomic.Int64 // unix nanos of the newest ack
	start   time.Time

	mu    sync.Mutex // guards rng, stats, err
	rng   *rand.Rand
	stats Stats
	err   error
}

func (r *runner) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// choose picks the next operation and its domain. Update and delete take
// the domain out of the live set so no other worker touches it meanwhile.
func (r *runner) choose() (op, label string) {
	r.mu.Lock()
	m := r.opts.Mix
	x := r.rng.Float64() * (m.Register + m.Update + m.Delete)
	pick := r.rng.Uint64()
	r.mu.Unlock()
	switch {
	case x < m.Register:
	case x < m.Register+m.Update:
		if l, ok := r.live.take(pick); ok {
			return OpUpdate, l
		}
	default:
		if l, ok := r.live.take(pick); ok {
			return OpDelete, l
		}
	}
	return OpRegister, fmt.Sprintf("%s-%d", r.opts.Prefix, r.seq.Add(1))
}

// nameServers picks a provider's pair, outside the TLD.
func (r *runner) nameServers() []string {
	r.mu.Lock()
	p := 1 + r.rng.IntN(registry.Providers)
	r.mu.Unlock()
	parent := "net"
	if tld := strings.Trim(r.opts.TLD, "."); tld == "net" || strings.HasSuffix(tld, ".net") {
		parent = "com"
	}
	return []string{
		fmt.Sprintf("ns1.hosting%03d.%s.", p, parent),
		fmt.Sprintf("ns2.hosting%03d.%s.", p, parent),
	}
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// work takes tokens and issues one operation per token on its own
// connection, reconnecting after a failure.
func (r *runner) work(ctx context.Context, tokens <-chan struct{}, stop func()) {
	var conn *pgx.Conn
	connected := false
	backoff := time.Duration(0)
	defer func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Close(cctx)
			cancel()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tokens:
		}
		op, label := r.choose()
		// Detached from ctx: cancelling the run must not cut a write
		// between its COMMIT and its record.
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.OpTimeout)
		var id int64
		var err error
		if conn == nil || conn.IsClosed() {
			conn, err = pgx.Connect(opCtx, r.opts.ConnString)
			if err != nil {
				conn = nil
				err = fmt.Errorf("connect: %w", err)
			} else if connected {
				r.mu.Lock()
				r.stats.Reconnects++
				r.mu.Unlock()
			}
			connected = connected || err == nil
		}
		if err == nil {
			switch op {
			case OpRegister:
				id, err = registry.Register(opCtx, conn, label, r.nameServers())
			case OpUpdate:
				id, err = registry.UpdateNS(opCtx, conn, label, r.nameServers())
			case OpDelete:
				id, err = registry.Delete(opCtx, conn, label)
			}
		}
		cancel()
		if err == nil {
			if backoff > 0 {
				r.opts.Logger.Info("load writes succeed again", "op", op, "domain", label)
			}
			backoff = 0
			if op != OpDelete {
				r.live.add(label)
			}
			if werr := r.record(Record{ID: id, Op: op, Domain: label, At: time.Now().UTC()}); werr != nil {
				stop()
				return
			}
			continue
		}
		r.failed(op, label, err)
		// What is known about the domain now decides whether later
		// operations may use it.
		var ce *registry.CommitError
		switch {
		case errors.As(err, &ce):
			if werr := r.record(Record{ID: ce.JournalID, Op: op, Domain: label, At: time.Now().UTC(),
				Error: err.Error(), Uncertain: true}); werr != nil {
				stop()
				return
			}
			if op == OpUpdate {
				r.live.add(label) // it exists either way
			}
		case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrExists):
			// Not ours to touch any more (or a prefix clash).
		default:
			if op != OpRegister {
				r.live.add(label)
			}
		}
		if conn != nil && conn.IsClosed() {
			conn = nil
		}
		if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrExists) || errors.Is(err, registry.ErrInvalid) {
			continue // the database answered; no reason to slow down
		}
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		r.opts.Logger.Warn("load write failed; backing off", "op", op, "domain", label, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func (r *runner) failed(op, label string, err error) {
	r.mu.Lock()
	r.stats.Errors++
	if errors.Is(err, registry.ErrCommitUncertain) {
		r.stats.Uncertain++
	}
	r.mu.Unlock()
	if r.opts.OnError != nil {
		r.opts.OnError(op, label, err)
	}
}

// record writes rec to the journal and counts it. A journal that cannot be
// written ends the run: acknowledging writes nobody records would make the
// history lie.
func (r *runner) record(rec Record) error {
	if err := r.jw.write(rec); err != nil {
		r.fail(err)
		return err
	}
	if rec.Acked() {
		// Workers race here, so only move lastAck forward: an older ack
		// recorded late does not shorten or split a gap.
		now := rec.At.UnixNano()
		prev := r.lastAck.Load()
		for now > prev && !r.lastAck.CompareAndSwap(prev, now) {
			prev = r.lastAck.Load()
		}
		r.mu.Lock()
		st := &r.stats
		st.Acked++
		st.ByOp[rec.Op]++
		if st.FirstID == 0 || rec.ID < st.FirstID {
			st.FirstID = rec.ID
		}
		st.LastID = max(st.LastID, rec.ID)
		if gap := time.Duration(now - prev); now > prev && gap > st.LongestGap {
			st.LongestGap = gap
		}
		r.mu.Unlock()
	}
	if r.opts.OnRecord != nil {
		r.opts.OnRecord(rec)
	}
	return nil
}

// domainSet holds the run's domains that exist and are not being changed.
type domainSet struct {
	mu    sync.Mutex
	names []string
}

func newDomainSet() *domainSet { return &domainSet{} }

func (s *domainSet) add(name string) {
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
}

// take removes and returns the domain at pick modulo the set's size.
func (s *domainSet) take(pick uint64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) == 0 {
		return "", false
	}
	i := int(pick % uint64(len(s.names)))
	name := s.names[i]
	last := len(s.names) - 1
	s.names[i] = s.names[last]
	s.names = s.names[:last]
	return name, true
}
