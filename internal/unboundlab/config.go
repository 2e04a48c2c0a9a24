// Package unboundlab runs Unbound (Debian's) as the lab's validating
// resolver: the "outside" view of a registry's zone. Its only trust anchor
// is the lab TLD's KSK, it reaches the TLD through a stub to the public
// secondary (Knot), and an answer it marks secure (AD) proves the zone as
// published validates, which is what a failover verifies before it reports
// success (INCIDENTS.md, .se 2009: a zone that is served but does not
// validate is an outage for every validating resolver).
//
// The resolver must never talk to anything but loopback, whatever it is
// asked: every non-loopback IPv4 range is a do-not-query-address, IPv6 is
// off, names outside the configured zones are refused locally (no root
// priming), and queries leave from 127.0.0.1.
//
// Everything the daemon writes (config, pid file) lives under Options.Dir.
// The config syntax is that of Unbound 1.17 (Debian 12).
package unboundlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Paths are the Unbound executables.
type Paths struct {
	Unbound, Checkconf string
}

// ErrNotFound is returned by Find when Unbound is not installed.
var ErrNotFound = errors.New("unbound not found: install it with: apt-get install -y unbound")

// Find locates unbound and unbound-checkconf on PATH or in /usr/sbin,
// which a non-login PATH may lack.
func Find() (Paths, error) {
	find := func(name string) (string, error) {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", fmt.Errorf("%w (missing %s)", ErrNotFound, name)
	}
	var p Paths
	var err error
	if p.Unbound, err = find("unbound"); err != nil {
		return Paths{}, err
	}
	if p.Checkconf, err = find("unbound-checkconf"); err != nil {
		return Paths{}, err
	}
	return p, nil
}

// DefaultCacheTTL caps how long the resolver keeps any answer, negative
// answer or bogus verdict. One second: the lab checks what the secondary
// serves now (a new serial right after a failover, a repaired zone right
// after a bad one), and on loopback a re-fetch costs nothing.
const DefaultCacheTTL = time.Second

// Options describe one resolver.
type Options struct {
	// Dir holds the config and pid file; created if missing.
	Dir string
	// Listen is where the resolver answers (UDP and TCP); a loopback
	// address.
	Listen netip.AddrPort
	// Zones are the only names it resolves; everything else is refused.
	Zones []Zone
	// CacheTTL caps cache lifetimes (see DefaultCacheTTL); zero means the
	// default. Whole seconds.
	CacheTTL time.Duration
	// Verbosity is Unbound's log verbosity (0-5); 1 logs operational
	// messages and, with val-log-level, every bogus verdict with reason.
	Verbosity int
}

// Zone is one stub zone with its trust anchors.
type Zone struct {
	Origin string
	// Upstreams are the authoritative servers (stub-addr), loopback only.
	Upstreams []netip.AddrPort
	// Anchors are DNSKEY (normally the KSK) or DS records at Origin.
	Anchors []dns.RR
}

func (o Options) cacheSeconds() int {
	if o.CacheTTL <= 0 {
		return int(DefaultCacheTTL / time.Second)
	}
	return max(1, int(o.CacheTTL/time.Second))
}

// plainName is a domain name safe to put in quotes in unbound.conf.
func plainName(s string) bool {
	_, ok := dns.IsDomainName(s)
	return ok && s != "" && !strings.ContainsAny(s, " \t\"\\#\n\r")
}

// Validate checks o. Names and paths end up in a config file, so anything
// that could break its syntax is refused here rather than quoted, and every
// address must be loopback: the resolver is not allowed to reach further.
func (o Options) Validate() error {
	if o.Dir == "" || !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("unbound config: Dir %q must be an absolute path", o.Dir)
	}
	if strings.ContainsAny(o.Dir, "\"\n\r\\#") {
		return fmt.Errorf("unbound config: Dir %q contains a character Unbound's config cannot hold", o.Dir)
	}
	if !o.Listen.IsValid() || o.Listen.Port() == 0 {
		return fmt.Errorf("unbound config: Listen %v needs an address and a port", o.Listen)
	}
	if !o.Listen.Addr().Is4() || !o.Listen.Addr().IsLoopback() {
		return fmt.Errorf("unbound config: Listen %v is not an IPv4 loopback address", o.Listen)
	}
	if o.Verbosity < 0 || o.Verbosity > 5 {
		return fmt.Errorf("unbound config: Verbosity %d is not 0-5", o.Verbosity)
	}
	if len(o.Zones) == 0 {
		return errors.New("unbound config: no zones")
	}
	seen := map[string]bool{}
	for _, z := range o.Zones {
		if !plainName(z.Origin) || !dns.IsFqdn(z.Origin) || z.Origin == "." {
			return fmt.Errorf("unbound config: zone %q is not an absolute domain name below the root", z.Origin)
		}
		origin := dns.CanonicalName(z.Origin)
		if seen[origin] {
			return fmt.Errorf("unbound config: zone %s listed twice", origin)
		}
		seen[origin] = true
		if len(z.Upstreams) == 0 {
			return fmt.Errorf("unbound config: zone %s has no upstreams", origin)
		}
		for _, u := range z.Upstreams {
			if !u.IsValid() || u.Port() == 0 {
				return fmt.Errorf("unbound config: zone %s: upstream %v needs an address and a port", origin, u)
			}
			if !u.Addr().Is4() || !u.Addr().IsLoopback() {
				return fmt.Errorf("unbound config: zone %s: upstream %v is not an IPv4 loopback address", origin, u)
			}
		}
		if len(z.Anchors) == 0 {
			return fmt.Errorf("unbound config: zone %s has no trust anchor (it would resolve insecurely)", origin)
		}
		for _, a := range z.Anchors {
			if err := checkAnchor(origin, a); err != nil {
				return fmt.Errorf("unbound config: zone %s: %w", origin, err)
			}
		}
	}
	return nil
}

func checkAnchor(origin string, rr dns.RR) error {
	if rr == nil {
		return errors.New("nil trust anchor")
	}
	if !strings.EqualFold(rr.Header().Name, origin) {
		return fmt.Errorf("trust anchor owner %s is not the zone", rr.Header().Name)
	}
	switch a := rr.(type) {
	case *dns.DNSKEY:
		if a.Flags&dns.ZONE == 0 {
			return fmt.Errorf("trust anchor DNSKEY flags %d lack the zone key bit", a.Flags)
		}
	case *dns.DS:
	default:
		return fmt.Errorf("trust anchor is a %s, want DNSKEY or DS", dns.TypeToString[rr.Header().Rrtype])
	}
	return nil
}

// anchorText is the record as unbound's trust-anchor wants it: one line,
// owner lower-cased, no TTL (Unbound ignores it anyway).
func anchorText(rr dns.RR) string {
	var rdata string
	switch a := rr.(type) {
	case *dns.DNSKEY:
		rdata = fmt.Sprintf("DNSKEY %d %d %d %s", a.Flags, a.Protocol, a.Algorithm, a.PublicKey)
	case *dns.DS:
		rdata = fmt.Sprintf("DS %d %d %d %s", a.KeyTag, a.Algorithm, a.DigestType, strings.ToUpper(a.Digest))
	}
	return dns.CanonicalName(rr.Header().Name) + " IN " + rdata
}

// ConfigPath is where WriteConfig puts the config for o.
func (o Options) ConfigPath() string { return filepath.Join(o.Dir, "unbound.conf") }

// WriteConfig writes unbound.conf for o under o.Dir and returns its path.
// It holds no secret (trust anchors are public keys), so 0644.
func WriteConfig(o Options) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return "", fmt.Errorf("unbound config: %w", err)
	}
	path := o.ConfigPath()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(render(o)), 0o644); err != nil {
		return "", fmt.Errorf("unbound config: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("unbound config: %w", err)
	}
	return path, nil
}

// notLoopback covers every IPv4 address outside 127.0.0.0/8. Listed as
// do-not-query-address, it makes the loopback-only rule Unbound's own:
// even a referral to a delegation's real name servers (198.51.100.x in
// the lab registry) is never followed off the machine.
var notLoopback = []string{
	"0.0.0.0/2", "64.0.0.0/3", "96.0.0.0/4", "112.0.0.0/5",
	"120.0.0.0/6", "124.0.0.0/7", "126.0.0.0/8", "128.0.0.0/1",
}

// render produces the config text, deterministic for a given o so it can
// be compared with a golden file.
func render(o Options) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	ttl := o.cacheSeconds()

	p("# Written by regdr internal/unboundlab: a validating resolver for the lab")
	p("# zone(s) only, that never sends a query beyond 127.0.0.0/8.")
	p("server:")
	p("    directory: \"%s\"", o.Dir)
	p("    chroot: \"\"")
	p("    username: \"\"")
	p("    do-daemonize: no")
	p("    pidfile: \"%s/unbound.pid\"", o.Dir)
	// Log to stderr: whoever starts the daemon owns the log file.
	p("    use-syslog: no")
	p("    logfile: \"\"")
	p("    log-time-ascii: yes")
	p("    verbosity: %d", o.Verbosity)
	// Level 2 logs each bogus verdict with its reason and the server
	// that sent it: what an operator reads after a failed verification.
	p("    val-log-level: 2")
	p("    interface: %s@%d", o.Listen.Addr(), o.Listen.Port())
	p("    port: %d", o.Listen.Port())
	p("    interface-automatic: no")
	p("    do-ip4: yes")
	p("    do-ip6: no")
	p("    do-udp: yes")
	p("    do-tcp: yes")
	p("    access-control: 0.0.0.0/0 refuse")
	p("    access-control: 127.0.0.0/8 allow")
	// One thread and small caches: the lab shares two cores with two
	// PostgreSQL clusters, etcd, Knot and the agents.
	p("    num-threads: 1")
	p("    so-reuseport: no")
	p("    outgoing-range: 64")
	p("    num-queries-per-thread: 32")
	p("    msg-cache-size: 4m")
	p("    rrset-cache-size: 4m")
	p("    key-cache-size: 1m")
	p("    neg-cache-size: 1m")
	p("    cache-max-ttl: %d", ttl)
	p("    cache-max-negative-ttl: %d", ttl)
	p("    val-bogus-ttl: %d", ttl)
	p("    prefetch: no")
	p("    serve-expired: no")
	// An upstream that was down (a lab site being failed over) is
	// tried again soon rather than avoided for 15 minutes.
	p("    infra-host-ttl: 10")
	p("    infra-keep-probing: yes")
	// Extended DNS Errors (RFC 8914): a SERVFAIL says why (DNSSEC Bogus,
	// Signature Expired, DNSKEY Missing...), which Validate reports.
	p("    ede: yes")
	p("    module-config: \"validator iterator\"")
	p("    harden-dnssec-stripped: yes")
	p("    trust-anchor-signaling: no")
	p("    root-key-sentinel: no")
	// Loopback only, in both directions.
	p("    do-not-query-localhost: no")
	p("    outgoing-interface: 127.0.0.1")
	for _, n := range notLoopback {
		p("    do-not-query-address: %s", n)
	}
	// Nothing outside the lab zones is resolved: no root priming, no
	// query for the real DNS. The zones themselves are made transparent
	// again, which also lifts Unbound's built-in local zones for RFC 6761
	// names such as test. (the lab TLD).
	p("    local-zone: \".\" refuse")
	for _, z := range o.Zones {
		p("    local-zone: \"%s\" transparent", dns.CanonicalName(z.Origin))
	}
	for _, z := range o.Zones {
		for _, a := range z.Anchors {
			p("    trust-anchor: \"%s\"", anchorText(a))
		}
	}
	p("")
	p("remote-control:")
	p("    control-enable: no")
	for _, z := range o.Zones {
		p("")
		p("stub-zone:")
		p("    name: \"%s\"", dns.CanonicalName(z.Origin))
		for _, u := range z.Upstreams {
			p("    stub-addr: %s@%d", u.Addr(), u.Port())
		}
		// The stub's addresses are the only servers for the zone: the
		// NS set it publishes names hosts on other machines.
		p("    stub-prime: no")
		p("    stub-first: no")
	}
	return b.String()
}

// AnchorsFromKeyDir reads the KSK DNSKEYs (SEP flag set) of origin from
// BIND-format K<origin>+*.key files in dir, as zonesign.GenerateKey writes
// them. Only the public .key files are read; the private halves are not
// touched. It fails when dir holds no KSK for origin.
func AnchorsFromKeyDir(dir, origin string) ([]dns.RR, error) {
	if !dns.IsFqdn(origin) {
		return nil, fmt.Errorf("trust anchors: origin %q is not absolute (needs a trailing dot)", origin)
	}
	origin = dns.CanonicalName(origin)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trust anchors for %s: %w", origin, err)
	}
	prefix := "k" + origin + "+"
	var out []dns.RR
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".key") || !strings.HasPrefix(strings.ToLower(name), prefix) {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("trust anchors for %s: %w", origin, err)
		}
		rr, err := dns.ReadRR(f, path)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("trust anchors for %s: %s: %w", origin, path, err)
		}
		k, ok := rr.(*dns.DNSKEY)
		if !ok || !strings.EqualFold(k.Hdr.Name, origin) {
			return nil, fmt.Errorf("trust anchors for %s: %s holds no DNSKEY for the zone", origin, path)
		}
		if k.Flags&dns.SEP != 0 && k.Flags&dns.ZONE != 0 {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("trust anchors for %s: no KSK (.key with flags 257) in %s", origin, dir)
	}
	return out, nil
}
