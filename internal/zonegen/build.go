// Package zonegen is the lab's registry zone generator: what a real
// registry runs to turn its database into a signed TLD zone file that
// regdr then picks up and serves.
//
// It reads the pinned lab schema (see internal/registry) in one consistent
// snapshot (ReadSnapshot), turns it into records (Build, pure), signs them
// (internal/zonesign) and replaces the zone file atomically. A Generator
// does this at start and after every burst of registry_changed
// notifications, reconnecting when the database goes away, so the file
// follows the registry within about a debounce interval.
//
// Each step is traceable to INCIDENTS.md: one snapshot and a delegation
// count checked against it (.hk 2004: never a zone from half a database),
// absolute names built from an origin that must carry its trailing dot
// (.se 2009), a serial that never goes back even across restarts (RIPE
// 2012), and a file replaced only whole.
package zonegen

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Snapshot is the delegation data of a registry at one instant.
type Snapshot struct {
	Delegations []Delegation
	// Glue maps an in-zone name server (absolute, lower case) to its
	// addresses. Hosts outside the zone never need glue and are not kept.
	Glue map[string][]netip.Addr
	// JournalID is the highest journal id visible in the snapshot. It is
	// not a watermark: a transaction that took a lower id but committed
	// later is not in the snapshot; its notification triggers the next one.
	JournalID int64
}

// Delegation is one active domain with its name servers.
type Delegation struct {
	Label string   // the label under the TLD: "kumo" for kumo.test.
	NS    []string // absolute host names
	DS    []DS
}

// DS is one delegation signer record as the registry stores it.
type DS struct {
	KeyTag     uint16
	Algorithm  uint8
	DigestType uint8
	Digest     string // hex
}

// SOATimers are the SOA fields that tell secondaries and resolvers how to
// behave. Zero fields take the DefaultSOATimers value.
type SOATimers struct {
	Refresh uint32
	Retry   uint32
	Expire  uint32
	Minimum uint32
}

// DefaultSOATimers are the values TLD operators commonly publish.
func DefaultSOATimers() SOATimers {
	return SOATimers{
		// Refresh 1800: a secondary that missed a NOTIFY polls within
		// 30 minutes; shorter costs SOA queries on every secondary.
		Refresh: 1800,
		// Retry 900: after a failed refresh, try again in 15 minutes.
		Retry: 900,
		// Expire 604800: a secondary keeps answering for a week without
		// reaching the primary, long enough to survive losing both sites'
		// primaries over a weekend, short enough that a secondary cut
		// off for good stops serving stale delegations.
		Expire: 604800,
		// Minimum 3600: negative answers (NXDOMAIN) are cached for an
		// hour (RFC 2308). A new registration may stay invisible that
		// long to a resolver that asked just before it existed; .se 2009
		// showed the cost of longer negative caching after an error.
		Minimum: 3600,
	}
}

// TTLs of the records Build makes. Zero fields take the DefaultTTLs value.
type TTLs struct {
	SOA uint32
	NS  uint32 // apex and delegation NS, and glue
	DS  uint32
}

// DefaultTTLs trade resolver load against how fast a change is seen.
func DefaultTTLs() TTLs {
	return TTLs{
		// SOA 3600: with Minimum, bounds negative caching (RFC 9077).
		SOA: 3600,
		// NS 86400: delegations change rarely and are queried a lot; a
		// day is the usual TLD value. A moved name server keeps old
		// traffic for up to a day, which is why registrars overlap.
		NS: 86400,
		// DS 3600: a DS change (a DNSSEC key rollover or a fix for a
		// broken chain) must take effect within an hour.
		DS: 3600,
	}
}

// Params are the zone-wide data that is not in the registry database.
type Params struct {
	Origin string // absolute: "test." (a missing trailing dot is an error, not fixed)
	Serial uint32
	// ApexNS are the TLD's own name servers; the first is the SOA MNAME.
	ApexNS []string
	// ApexGlue gives addresses for apex name servers inside the zone.
	ApexGlue map[string][]netip.Addr
	SOA      SOATimers
	TTL      TTLs
}

func (p Params) withDefaults() Params {
	d, t := DefaultSOATimers(), DefaultTTLs()
	p.SOA.Refresh = cmp.Or(p.SOA.Refresh, d.Refresh)
	p.SOA.Retry = cmp.Or(p.SOA.Retry, d.Retry)
	p.SOA.Expire = cmp.Or(p.SOA.Expire, d.Expire)
	p.SOA.Minimum = cmp.Or(p.SOA.Minimum, d.Minimum)
	p.TTL.SOA = cmp.Or(p.TTL.SOA, t.SOA)
	p.TTL.NS = cmp.Or(p.TTL.NS, t.NS)
	p.TTL.DS = cmp.Or(p.TTL.DS, t.DS)
	return p
}

// Build turns a snapshot into the unsigned zone: apex SOA (MNAME the first
// apex NS, RNAME hostmaster.<origin>), apex NS and their glue, then per
// delegation its NS (sorted), DS, and glue for in-zone name servers. It
// does no I/O.
//
// It refuses rather than guesses: an origin or host name without its
// trailing dot, a label that is not a single label (a doubled origin such
// as "kumo.test" would become kumo.test.test.), duplicate labels, a
// delegation without name servers, a malformed DS digest.
func Build(s Snapshot, p Params) ([]dns.RR, error) {
	p = p.withDefaults()
	if !dns.IsFqdn(p.Origin) {
		return nil, fmt.Errorf("build zone: origin %q has no trailing dot; refusing to guess (INCIDENTS.md .se 2009)", p.Origin)
	}
	origin := dns.CanonicalName(p.Origin)
	if _, ok := dns.IsDomainName(origin); !ok || origin == "." {
		return nil, fmt.Errorf("build zone: origin %q is not a valid TLD name", p.Origin)
	}
	if len(p.ApexNS) == 0 {
		return nil, fmt.Errorf("build zone %s: no apex name servers", origin)
	}
	apexNS, err := hostNames(p.ApexNS, origin, "apex")
	if err != nil {
		return nil, err
	}

	var rrs []dns.RR
	rrs = append(rrs, &dns.SOA{
		Hdr:     hdr(origin, dns.TypeSOA, p.TTL.SOA),
		Ns:      apexNS[0],
		Mbox:    "hostmaster." + origin,
		Serial:  p.Serial,
		Refresh: p.SOA.Refresh,
		Retry:   p.SOA.Retry,
		Expire:  p.SOA.Expire,
		Minttl:  p.SOA.Minimum,
	})
	sortedApex := slices.Clone(apexNS)
	slices.Sort(sortedApex)
	for _, ns := range slices.Compact(sortedApex) {
		rrs = append(rrs, &dns.NS{Hdr: hdr(origin, dns.TypeNS, p.TTL.NS), Ns: ns})
	}

	// Glue, keyed by host so a server shared by many domains (or by the
	// apex and a domain) gets one address set.
	glue := map[string][]netip.Addr{}
	for host, addrs := range p.ApexGlue {
		h := dns.CanonicalName(host)
		if !dns.IsFqdn(host) || !inZone(h, origin) {
			return nil, fmt.Errorf("build zone %s: apex glue for %q, which is not an absolute name inside the zone", origin, host)
		}
		if !slices.Contains(apexNS, h) {
			return nil, fmt.Errorf("build zone %s: apex glue for %s, which is not an apex name server", origin, h)
		}
		glue[h] = append(glue[h], addrs...)
	}

	snapGlue := make(map[string][]netip.Addr, len(s.Glue))
	for h, a := range s.Glue {
		h = dns.CanonicalName(h)
		snapGlue[h] = append(snapGlue[h], a...)
	}
	merged := map[string]bool{} // hosts whose snapshot glue is in glue
	dels := slices.Clone(s.Delegations)
	for i := range dels {
		dels[i].Label = strings.ToLower(dels[i].Label)
	}
	slices.SortFunc(dels, func(a, b Delegation) int { return strings.Compare(a.Label, b.Label) })
	for i, d := range dels {
		if i > 0 && dels[i-1].Label == d.Label {
			return nil, fmt.Errorf("build zone %s: domain %q appears twice", origin, d.Label)
		}
		owner, err := delegationName(d.Label, origin)
		if err != nil {
			return nil, err
		}
		if len(d.NS) == 0 {
			return nil, fmt.Errorf("build zone %s: delegation %s has no name servers", origin, owner)
		}
		ns, err := hostNames(d.NS, origin, owner)
		if err != nil {
			return nil, err
		}
		slices.Sort(ns)
		for _, h := range slices.Compact(ns) {
			rrs = append(rrs, &dns.NS{Hdr: hdr(owner, dns.TypeNS, p.TTL.NS), Ns: h})
			if inZone(h, origin) && !merged[h] {
				merged[h] = true
				glue[h] = append(glue[h], snapGlue[h]...)
			}
		}
		for _, ds := range d.DS {
			digest := strings.ToUpper(ds.Digest)
			if b, err := hex.DecodeString(digest); err != nil || len(b) == 0 {
				return nil, fmt.Errorf("build zone %s: DS %d of %s: digest %q is not hex", origin, ds.KeyTag, owner, ds.Digest)
			}
			rrs = append(rrs, &dns.DS{
				Hdr:        hdr(owner, dns.TypeDS, p.TTL.DS),
				KeyTag:     ds.KeyTag,
				Algorithm:  ds.Algorithm,
				DigestType: ds.DigestType,
				Digest:     digest,
			})
		}
	}

	hosts := make([]string, 0, len(glue))
	for h := range glue {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		addrs := slices.Clone(glue[h])
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, a := range slices.Compact(addrs) {
			rr, err := addressRecord(h, a, p.TTL.NS)
			if err != nil {
				return nil, fmt.Errorf("build zone %s: %w", origin, err)
			}
			rrs = append(rrs, rr)
		}
	}
	return rrs, nil
}

func hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// inZone: strictly below the origin (the origin itself needs no glue).
func inZone(name, origin string) bool {
	return name != origin && dns.IsSubDomain(origin, name)
}

// delegationName is <label>.<origin>. for a single, valid label.
func delegationName(label, origin string) (string, error) {
	if label == "" {
		return "", fmt.Errorf("build zone %s: empty domain label", origin)
	}
	if strings.Contains(label, ".") {
		return "", fmt.Errorf("build zone %s: domain %q is not a single label (a name that already carries the origin would be doubled: INCIDENTS.md .se 2009)", origin, label)
	}
	name := label + "." + origin
	if _, ok := dns.IsDomainName(name); !ok || len(label) > 63 {
		return "", fmt.Errorf("build zone %s: domain %q is not a valid label", origin, label)
	}
	return name, nil
}

// hostNames lower-cases and checks name server names: they must be
// absolute, or a relative "ns1.kumo" would silently become ns1.kumo.<origin>.
func hostNames(in []string, origin, of string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, h := range in {
		if !dns.IsFqdn(h) {
			return nil, fmt.Errorf("build zone %s: name server %q of %s has no trailing dot", origin, h, of)
		}
		if _, ok := dns.IsDomainName(h); !ok || h == "." {
			return nil, fmt.Errorf("build zone %s: name server %q of %s is not a valid host name", origin, h, of)
		}
		out = append(out, dns.CanonicalName(h))
	}
	return out, nil
}

func addressRecord(host string, a netip.Addr, ttl uint32) (dns.RR, error) {
	a = a.Unmap()
	switch {
	case !a.IsValid() || a.Zone() != "":
		return nil, fmt.Errorf("glue for %s: address %v is not a plain IP address", host, a)
	case a.Is4():
		b := a.As4()
		return &dns.A{Hdr: hdr(host, dns.TypeA, ttl), A: b[:]}, nil
	default:
		b := a.As16()
		return &dns.AAAA{Hdr: hdr(host, dns.TypeAAAA, ttl), AAAA: b[:]}, nil
	}
}

// NextSerial is the SOA serial after prev: the current Unix time in
// seconds, or prev+1 if that is not newer. Unix time because it needs no
// shared state: a generator restarted without its file, or started at the
// other site after a failover, still moves forward, and an operator can
// read when a zone was built. Bursts faster than one per second run ahead
// of the clock by a few seconds and the clock catches up.
//
// "Newer" is RFC 1982 serial arithmetic, so a serial near 2^32 wraps
// correctly, and a clock more than 2^31-1 seconds ahead of prev (which a
// secondary would read as older) is not used: prev+1 is.
func NextSerial(prev uint32, now time.Time) uint32 {
	unix := now.Unix()
	if unix > 0 && unix <= int64(^uint32(0)) && SerialNewer(uint32(unix), prev) {
		return uint32(unix)
	}
	return prev + 1
}

// SerialNewer reports whether serial a is newer than b in RFC 1982 serial
// number arithmetic (32 bits): a != b and a-b, taken mod 2^32, is below
// 2^31.
func SerialNewer(a, b uint32) bool {
	d := a - b
	return d != 0 && d < 1<<31
}
