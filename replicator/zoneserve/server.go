// Package zoneserve is a site's hidden primary: it serves the zones the
// agent has accepted to the public secondaries (and to the other site's
// agent) by AXFR, answers their SOA refresh queries, receives NOTIFY, and
// sends NOTIFY (Notify) when a new version is published.
//
// It is deliberately not a general name server. It answers exactly: SOA at
// a zone apex, AXFR and IXFR over TCP with a valid TSIG, and NOTIFY with a
// valid TSIG. Everything else is REFUSED, because a hidden primary that
// answered ordinary queries would be one misconfigured resolver away from
// being a public server nobody monitors.
//
// IXFR (RFC 1995) is answered from the versioned store's differences when
// Options.History knows the client's serial: one condensed step from the
// client's version to the served one. When it does not (serial pruned or
// never stored here, difference not smaller than the zone, no History),
// the answer is the whole zone in AXFR format, which RFC 1995 §4 allows
// and every secondary understands.
package zoneserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Options configures a Server.
type Options struct {
	// Addr is host:port for both the UDP and the TCP listener. Port 0
	// picks a free port (the same for both); Addr() tells which.
	Addr string
	// TSIG maps key names (FQDN) to base64 secrets. All keys are
	// hmac-sha256: a key is name plus algorithm plus secret (RFC 8945
	// §4), and fixing the algorithm means a request can never choose a
	// weaker one for a known name. Transfers and NOTIFY need one of
	// these keys; with none configured they are always refused.
	TSIG map[string]string
	// Logger receives one line per transfer and per refused request.
	// Secrets are never logged. Nil discards the log.
	Logger *slog.Logger
	// OnNotify is called for each NOTIFY that carried a valid TSIG, from
	// the server's goroutine for that request, before the answer is sent.
	// It must not block: queue the work (e.g. a non-blocking send on a
	// buffered channel) and return, or the sender sees a timeout and
	// retransmits. serial is 0 when the NOTIFY carried no SOA (RFC 1996
	// makes it optional); treat that as "ask the primary". The origin
	// may be a zone this site does not pull; the callback decides.
	OnNotify func(origin string, serial uint32, from netip.AddrPort)
	// History gives IXFR its differences; nil answers every IXFR with
	// the whole zone. zonestore.Store implements it.
	History History
}

// History is where incremental transfers come from: the versions a site
// has stored.
type History interface {
	// Diff returns the difference from origin's version with serial
	// from to the version to (the one being served): from's SOA, the
	// records to delete and the records to add, SOAs excluded. ok is
	// false with a nil error when from is unknown or the difference is
	// not worth sending; the server then sends the whole zone, as it
	// also does on an error (which it logs).
	Diff(ctx context.Context, origin string, from uint32, to *zone.Zone) (fromSOA *dns.SOA, deleted, added []dns.RR, ok bool, err error)
}

// Timeouts of the two listeners. A transfer writes one message at a time,
// each under WriteTimeout, so a large zone is not cut off by it.
const (
	readTimeout  = 2 * time.Second
	writeTimeout = 5 * time.Second
	// closeTimeout bounds Close: in-flight transfers get this long to
	// finish before their connections are dropped.
	closeTimeout = 5 * time.Second
	// diffTimeout bounds History.Diff: past it the client gets the
	// whole zone instead of waiting on a slow store.
	diffTimeout = 10 * time.Second
)

// Server is one hidden primary, on one address, for any number of zones.
type Server struct {
	opts  Options
	log   *slog.Logger
	keys  keyring
	zones atomic.Pointer[map[string]*zone.Zone]

	mu      sync.Mutex // serialises SetZone/RemoveZone and Start/Close
	started bool
	closed  bool
	addr    netip.AddrPort
	udp     *dns.Server
	tcp     *dns.Server
	served  chan error
}

// New checks opts and returns a server that is not yet listening.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		return nil, errors.New("zoneserve: Options.Addr is empty")
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("zoneserve: address %q: %w", opts.Addr, err)
	}
	keys, err := newKeyring(opts.TSIG)
	if err != nil {
		return nil, fmt.Errorf("zoneserve: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger, keys: keys}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	empty := map[string]*zone.Zone{}
	s.zones.Store(&empty)
	return s, nil
}

// Start binds the TCP and the UDP listener and returns once both are
// serving, or with the first error (ctx done, address in use, ...).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("zoneserve: Start called twice")
	}
	tcpLn, udpConn, err := listen(ctx, s.opts.Addr)
	if err != nil {
		return fmt.Errorf("zoneserve: listen on %s: %w", s.opts.Addr, err)
	}
	s.addr = tcpLn.Addr().(*net.TCPAddr).AddrPort()

	up := make(chan struct{}, 2)
	s.served = make(chan error, 2)
	newServer := func() *dns.Server {
		return &dns.Server{
			Handler:           s,
			TsigProvider:      s.keys,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			UDPSize:           dns.DefaultMsgSize,
			NotifyStartedFunc: func() { up <- struct{}{} },
		}
	}
	s.tcp, s.udp = newServer(), newServer()
	s.tcp.Listener = tcpLn
	s.udp.PacketConn = udpConn
	for _, srv := range []*dns.Server{s.tcp, s.udp} {
		go func() { s.served <- srv.ActivateAndServe() }()
	}
	for n := 0; n < 2; {
		select {
		case <-up:
			n++
		case err := <-s.served:
			tcpLn.Close()
			udpConn.Close()
			return fmt.Errorf("zoneserve: serve on %s: %w", s.addr, err)
		case <-ctx.Done():
			tcpLn.Close()
			udpConn.Close()
			return fmt.Errorf("zoneserve: start on %s: %w", s.addr, ctx.Err())
		}
	}
	s.started = true
	s.log.Info("hidden primary listening", "addr", s.addr.String(), "tsig_keys", len(s.keys))
	return nil
}

// listen binds TCP first and then UDP on the same port. With port 0 the
// kernel's TCP choice may be taken for UDP; then it tries again.
func listen(ctx context.Context, addr string) (net.Listener, net.PacketConn, error) {
	host, port, _ := net.SplitHostPort(addr)
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		tcpLn, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := strconv.Itoa(tcpLn.Addr().(*net.TCPAddr).Port)
		udpConn, err := lc.ListenPacket(ctx, "udp", net.JoinHostPort(host, p))
		if err == nil {
			return tcpLn, udpConn, nil
		}
		tcpLn.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, err
		}
	}
}

// Addr is the address both listeners are bound to (valid after Start).
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops both listeners. In-flight transfers get a few seconds to
// finish on the version they started with. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	for _, srv := range []*dns.Server{s.tcp, s.udp} {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for range 2 {
		select {
		case err := <-s.served:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("zoneserve: close %s: %w", s.addr, err)
	}
	return nil
}

// SetZone publishes z (replacing any version of the same origin). The swap
// is atomic: a query sees either the old or the new version, and a
// transfer that has started finishes on the version it started with. z
// must not be modified afterwards.
func (s *Server) SetZone(z *zone.Zone) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.zones.Load()
	next := make(map[string]*zone.Zone, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[z.Origin] = z
	s.zones.Store(&next)
	s.log.Info("zone published", "zone", z.Origin, "serial", z.Serial, "records", z.Len(), "digest", z.Digest)
}

// RemoveZone stops serving origin (e.g. when this site is fenced): after
// it returns, SOA queries and transfers for it are refused.
func (s *Server) RemoveZone(origin string) {
	origin = dns.CanonicalName(origin)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.zones.Load()
	if _, ok := old[origin]; !ok {
		return
	}
	next := make(map[string]*zone.Zone, len(old))
	for k, v := range old {
		if k != origin {
			next[k] = v
		}
	}
	s.zones.Store(&next)
	s.log.Info("zone withdrawn", "zone", origin)
}

// Zone returns the version of origin being served, or nil.
func (s *Server) Zone(origin string) *zone.Zone {
	return (*s.zones.Load())[dns.CanonicalName(origin)]
}
