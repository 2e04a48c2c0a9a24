package zonegen

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zonemeta"
)

// Channel is the notification channel the registry's journal trigger
// signals on (pg_notify('registry_changed', <journal id>)).
const Channel = "registry_changed"

// ErrStandby means the connection reached a standby (in recovery); the
// generator reads only the primary. List both sites' hosts with
// target_session_attrs=read-write in the connection string.
var ErrStandby = errors.New("registry database is a standby (in recovery); connect with target_session_attrs=read-write")

// Options configure GenerateOnce and Generator.Run.
type Options struct {
	// ConnString is a pgx connection string. It may list both sites'
	// hosts with target_session_attrs=read-write so the generator always
	// reads the primary: a standby's snapshot may lag, and notifications
	// are not replicated to it.
	ConnString string
	Origin     string // the TLD, absolute: "test."
	KeyDir     string // holds K<origin>+*.key/.private (zonesign.LoadKeys)
	OutFile    string // the signed zone; replaced atomically
	ApexNS     []string
	ApexGlue   map[string][]netip.Addr
	NSEC3      bool
	// SOA and TTL: zero fields take DefaultSOATimers and DefaultTTLs.
	SOA SOATimers
	TTL TTLs

	// Debounce is how long the notification stream must stay quiet
	// before a rebuild; default 100ms. A registrar batch of a thousand
	// updates makes one new zone, not a thousand, at the cost of that
	// much latency for a single update.
	Debounce time.Duration
	// MaxDelay caps the wait during a burst that never goes quiet, so a
	// steady write load still gets a fresh zone; default 20 × Debounce.
	MaxDelay time.Duration
	// Idle is how long Run waits for a notification before it pings the
	// database; default 10s. A dead peer whose TCP connection never
	// reports an error would otherwise leave Run waiting forever.
	Idle time.Duration
	// ResignEvery rebuilds an unchanged zone so signatures never get
	// near expiry (they are valid 14 days); default 24h.
	ResignEvery time.Duration
	// GenerateTimeout bounds one snapshot+sign+write; default 5m (a
	// million delegations take well under a minute).
	GenerateTimeout time.Duration

	// Logger gets one line per zone written and every reconnect; nil
	// discards.
	Logger *slog.Logger
	// OnWritten is called after each zone file is in place, with its
	// serial and the highest journal id its snapshot saw (see
	// Snapshot.JournalID). It runs on Run's goroutine: it must not block
	// for long.
	OnWritten func(serial uint32, journalID int64)
}

// Reconnect backoff: short enough that a failover (seconds) is followed
// quickly, capped so a database that is gone for good costs a log line
// every few seconds, not a busy loop.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// connectTimeout bounds one connection attempt (all listed hosts).
	connectTimeout = 10 * time.Second
	// rpcTimeout bounds LISTEN, ping and close.
	rpcTimeout = 5 * time.Second
)

func (o Options) withDefaults() (Options, error) {
	o.Debounce = cmp.Or(o.Debounce, 100*time.Millisecond)
	o.MaxDelay = cmp.Or(o.MaxDelay, 20*o.Debounce)
	o.Idle = cmp.Or(o.Idle, 10*time.Second)
	o.ResignEvery = cmp.Or(o.ResignEvery, 24*time.Hour)
	o.GenerateTimeout = cmp.Or(o.GenerateTimeout, 5*time.Minute)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.ConnString == "":
		return o, errors.New("zone generator: no database connection string")
	case !dns.IsFqdn(o.Origin):
		return o, fmt.Errorf("zone generator: origin %q has no trailing dot", o.Origin)
	case o.KeyDir == "":
		return o, fmt.Errorf("zone generator %s: no key directory", o.Origin)
	case o.OutFile == "":
		return o, fmt.Errorf("zone generator %s: no output file", o.Origin)
	case len(o.ApexNS) == 0:
		return o, fmt.Errorf("zone generator %s: no apex name servers", o.Origin)
	case o.Debounce < 0 || o.MaxDelay < o.Debounce || o.Idle < 0:
		return o, fmt.Errorf("zone generator %s: bad timing (debounce %v, max delay %v, idle %v)", o.Origin, o.Debounce, o.MaxDelay, o.Idle)
	}
	o.Origin = dns.CanonicalName(o.Origin)
	return o, nil
}

// ReadSerial returns the SOA serial of the zone file at path, 0 if there
// is no file. A file without a readable SOA is an error, not 0: guessing
// low would let the next zone regress the serial (RIPE NCC 2012).
func ReadSerial(path, origin string) (uint32, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read serial: %w", err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(bufio.NewReaderSize(f, 1<<16), dns.CanonicalName(origin), path)
	// The SOA is the first record in files Generator writes; the scan
	// goes on only for files from elsewhere.
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			if dns.CanonicalName(soa.Hdr.Name) != dns.CanonicalName(origin) {
				return 0, fmt.Errorf("read serial: %s: SOA owner %s is not %s", path, soa.Hdr.Name, origin)
			}
			return soa.Serial, nil
		}
	}
	if err := zp.Err(); err != nil {
		return 0, fmt.Errorf("read serial: %w", err)
	}
	return 0, fmt.Errorf("read serial: %s has no SOA record; move it away if it is not a zone", path)
}

// GenerateOnce connects, builds, signs and writes the zone once, with a
// serial newer than the one already in OutFile, and returns the serial.
func GenerateOnce(ctx context.Context, opts Options) (uint32, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return 0, err
	}
	var g Generator
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := pgx.Connect(cctx, opts.ConnString)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("zone generator %s: connect to registry: %w", opts.Origin, err)
	}
	defer closeConn(conn)
	if err := g.generate(ctx, conn, opts); err != nil {
		return 0, err
	}
	serial, _ := g.Last()
	return serial, nil
}

// Generator keeps a zone file in step with the registry. The zero value is
// ready; Run it once at a time.
type Generator struct {
	mu        sync.Mutex
	serial    uint32
	journalID int64
	written   time.Time
}

// Last is the serial and journal id of the last zone this Generator
// wrote (zeros before the first).
func (g *Generator) Last() (serial uint32, journalID int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.serial, g.journalID
}

// Run generates the zone at start, then again after every burst of
// registry_changed notifications, until ctx ends (it then returns
// ctx.Err()). When the database goes away it reconnects with backoff and
// regenerates on reconnecting, since notifications sent meanwhile are
// lost. LISTEN is issued before each snapshot, so a change committed
// after a snapshot always produces a notification that triggers the next.
//
// Other failures (no keys, a snapshot that does not reconcile, a standby
// at the other end) are logged and retried like a lost connection, with
// the same backoff: the previous file stays in place, which is the safe
// state, and the fix (keys installed, data repaired) is picked up without
// a restart.
func (g *Generator) Run(ctx context.Context, opts Options) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	log := opts.Logger.With("origin", opts.Origin)
	backoff := minBackoff
	for {
		progressed, err := g.session(ctx, opts)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if progressed {
			backoff = minBackoff
		}
		log.Warn("zone generator: registry session ended; reconnecting", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session is one connection's life: connect, LISTEN, generate, then wait
// for changes and regenerate until something fails. progressed reports
// whether at least one zone was written, which resets the backoff.
func (g *Generator) session(ctx context.Context, opts Options) (progressed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := pgx.Connect(cctx, opts.ConnString)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect to registry: %w", err)
	}
	defer closeConn(conn)
	lctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	_, err = conn.Exec(lctx, "LISTEN "+Channel)
	cancel()
	if err != nil {
		return false, fmt.Errorf("listen on %s: %w", Channel, err)
	}
	opts.Logger.Info("zone generator: listening for registry changes",
		"origin", opts.Origin, "host", conn.PgConn().Conn().RemoteAddr().String())
	for {
		if err := g.generate(ctx, conn, opts); err != nil {
			return progressed, err
		}
		progressed = true
		if err := g.waitForChange(ctx, conn, opts); err != nil {
			return progressed, err
		}
	}
}

// waitForChange returns when a burst of notifications has ended (quiet
// for Debounce, or MaxDelay after its first notification) or when the
// zone is due for re-signing. It returns an error if the connection
// failed.
func (g *Generator) waitForChange(ctx context.Context, conn *pgx.Conn, opts Options) error {
	for {
		n, err := waitNotification(ctx, conn, opts.Idle)
		if err != nil {
			return err
		}
		if n != nil {
			break
		}
		// Idle: prove the connection is alive, and re-sign if due.
		pctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("ping registry: %w", err)
		}
		g.mu.Lock()
		due := time.Since(g.written) >= opts.ResignEvery
		g.mu.Unlock()
		if due {
			opts.Logger.Info("zone generator: re-signing unchanged zone", "origin", opts.Origin)
			return nil
		}
	}
	deadline := time.Now().Add(opts.MaxDelay)
	for {
		wait := min(opts.Debounce, time.Until(deadline))
		if wait <= 0 {
			return nil
		}
		n, err := waitNotification(ctx, conn, wait)
		if err != nil {
			return err
		}
		if n == nil {
			return nil
		}
	}
}

// waitNotification waits up to d for one notification. It returns (nil,
// nil) on timeout: pgx leaves the connection usable after a deadline.
func waitNotification(ctx context.Context, conn *pgx.Conn, d time.Duration) (*pgconn.Notification, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err == nil {
		return n, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if wctx.Err() != nil && !conn.IsClosed() {
		return nil, nil
	}
	return nil, fmt.Errorf("wait for %s: %w", Channel, err)
}

// generate reads one snapshot over conn and writes the signed zone.
func (g *Generator) generate(ctx context.Context, conn *pgx.Conn, opts Options) error {
	ctx, cancel := context.WithTimeout(ctx, opts.GenerateTimeout)
	defer cancel()
	start := time.Now()
	fail := func(step string, err error) error {
		return fmt.Errorf("generate zone %s: %s: %w", opts.Origin, step, err)
	}

	prev, err := ReadSerial(opts.OutFile, opts.Origin)
	if err != nil {
		return fail("previous serial", err)
	}
	g.mu.Lock()
	if SerialNewer(g.serial, prev) {
		prev = g.serial
	}
	g.mu.Unlock()

	// A standby's snapshot may lag the primary: a zone built from it
	// could drop the newest delegations (ARCHITECTURE.md: never decide
	// from a standby read).
	var standby bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return fail("check primary", err)
	}
	if standby {
		return fail("check primary", ErrStandby)
	}
	snap, err := ReadSnapshot(ctx, conn, opts.Origin)
	if err != nil {
		return fail("snapshot", err)
	}
	serial := NextSerial(prev, time.Now())
	rrs, err := Build(snap, Params{
		Origin: opts.Origin, Serial: serial, ApexNS: opts.ApexNS, ApexGlue: opts.ApexGlue,
		SOA: opts.SOA, TTL: opts.TTL,
	})
	if err != nil {
		return fail("build", err)
	}
	keys, err := zonesign.LoadKeys(opts.KeyDir, opts.Origin)
	if err != nil {
		return fail("keys", err)
	}
	if len(keys) == 0 {
		return fail("keys", fmt.Errorf("no K%s+*.key files in %s", opts.Origin, opts.KeyDir))
	}
	signed, err := zonesign.Sign(ctx, rrs, opts.Origin, keys, zonesign.Options{NSEC3: opts.NSEC3})
	if err != nil {
		return fail("sign", err)
	}
	if err := os.MkdirAll(filepath.Dir(opts.OutFile), 0o755); err != nil {
		return fail("output directory", err)
	}
	// The sidecar first: the agent reconciles a zone only with the
	// database count of its own snapshot.
	meta := zonemeta.Meta{Origin: opts.Origin, Serial: serial, Delegations: len(snap.Delegations), JournalID: snap.JournalID}
	if err := zonemeta.Write(opts.OutFile, meta); err != nil {
		return fail("write", err)
	}
	if err := zonesign.WriteFileAtomic(opts.OutFile, signed); err != nil {
		return fail("write", err)
	}

	g.mu.Lock()
	g.serial, g.journalID, g.written = serial, snap.JournalID, time.Now()
	g.mu.Unlock()
	opts.Logger.Info("zone written", "origin", opts.Origin, "serial", serial, "journal_id", snap.JournalID,
		"delegations", len(snap.Delegations), "records", len(signed), "file", opts.OutFile,
		"took", time.Since(start).Round(time.Millisecond))
	if opts.OnWritten != nil {
		opts.OnWritten(serial, snap.JournalID)
	}
	return nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	conn.Close(ctx)
}
