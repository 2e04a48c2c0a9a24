package zonesign

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Options tune Sign. The zero value signs with NSEC, signatures valid from
// an hour ago for 14 days, on GOMAXPROCS workers.
type Options struct {
	// Inception and Expiration bound every RRSIG. Defaults: now-1h, so a
	// validator whose clock runs a little behind still accepts a fresh
	// zone; now+14d, long enough to ride out a long outage of the signer
	// (a weekend plus a failover) and short enough that a withdrawn key
	// stops validating within two weeks.
	Inception, Expiration time.Time

	// NSEC3 selects an NSEC3 chain (RFC 5155) with the RFC 9276
	// parameters: SHA-1, 0 extra iterations, empty salt. Otherwise NSEC.
	NSEC3 bool
	// OptOut leaves insecure delegations (NS without DS) out of the NSEC3
	// chain and sets the opt-out flag; a large TLD saves most of its
	// NSEC3 records this way. Only with NSEC3.
	OptOut bool

	// Workers signing in parallel. Default runtime.GOMAXPROCS(0).
	Workers int

	// DNSKEYTTL of the published DNSKEY RRset. Default 3600: one hour
	// bounds how long resolvers keep a DNSKEY set after a key rollover
	// step, at the cost of an hourly re-fetch.
	DNSKEYTTL uint32
}

func (o Options) withDefaults(now time.Time) Options {
	if o.Inception.IsZero() {
		o.Inception = now.Add(-time.Hour)
	}
	if o.Expiration.IsZero() {
		o.Expiration = now.Add(14 * 24 * time.Hour)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.DNSKEYTTL == 0 {
		o.DNSKEYTTL = 3600
	}
	return o
}

// isDNSSEC reports the record types Sign produces itself and therefore
// drops from its input: a re-signed zone must not carry stale signatures
// or a chain built over yesterday's names. DS stays: it is delegation
// data the parent publishes.
func isDNSSEC(t uint16) bool {
	switch t {
	case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeDNSKEY:
		return true
	}
	return false
}

// node is everything at one owner name.
type node struct {
	name   string
	sets   map[uint16][]dns.RR
	cut    bool // delegation point: NS at a name below the apex
	below  bool // occluded: below a delegation point (glue); unsigned, not in the chain
	hashed string
}

func (n *node) hasDS() bool { return len(n.sets[dns.TypeDS]) > 0 }

// signJob is one RRset to sign with one key.
type signJob struct {
	rrset []dns.RR
	key   *Key
}

// Sign returns rrs signed for origin with keys. It first drops any DNSSEC
// records from rrs (see isDNSSEC), then adds the DNSKEY RRset, the NSEC or
// NSEC3 chain (with NSEC3PARAM) and RRSIGs:
//
//   - the DNSKEY RRset is signed by the KSKs, every other authoritative
//     RRset by the ZSKs, per algorithm (RFC 6840 §5.11: every algorithm in
//     the DNSKEY set signs everything); an algorithm with only KSKs signs
//     everything with them (a combined signing key), one with only ZSKs
//     signs the DNSKEY set with them too;
//   - at a delegation point only DS and the NSEC are signed; the NS set
//     and glue below the cut are not authoritative data and stay unsigned
//     (RFC 4035 §2.2).
//
// Names are lower-cased. Every owner must be at or below origin (a name
// outside it is refused, the .se 2009 doubled-origin lesson), the apex must
// hold exactly one SOA, and each RRset one TTL (otherwise its signature
// could not cover it). The result is in canonical order (RFC 4034 §6.1)
// with each RRSIG after the RRset it covers. rrs is not modified.
func Sign(ctx context.Context, rrs []dns.RR, origin string, keys []*Key, opts Options) ([]dns.RR, error) {
	if !dns.IsFqdn(origin) {
		return nil, fmt.Errorf("sign: origin %q is not absolute (needs a trailing dot)", origin)
	}
	origin = dns.CanonicalName(origin)
	opts = opts.withDefaults(time.Now())
	if !opts.Expiration.After(opts.Inception) {
		return nil, fmt.Errorf("sign %s: expiration %s is not after inception %s", origin, opts.Expiration, opts.Inception)
	}
	if opts.OptOut && !opts.NSEC3 {
		return nil, fmt.Errorf("sign %s: opt-out needs NSEC3", origin)
	}
	zsks, ksks, err := signersByAlgorithm(origin, keys)
	if err != nil {
		return nil, err
	}

	nodes, err := collect(rrs, origin)
	if err != nil {
		return nil, err
	}
	apex := nodes[origin]
	if apex == nil || len(apex.sets[dns.TypeSOA]) != 1 {
		return nil, fmt.Errorf("sign %s: the apex needs exactly one SOA record", origin)
	}
	soa := apex.sets[dns.TypeSOA][0].(*dns.SOA)
	if len(apex.sets[dns.TypeNS]) == 0 {
		return nil, fmt.Errorf("sign %s: the apex has no NS records", origin)
	}
	if err := markCuts(nodes, origin); err != nil {
		return nil, err
	}

	// The DNSKEY RRset: one record per distinct key.
	var dnskeys []dns.RR
	for _, k := range keys {
		dup := false
		for _, d := range dnskeys {
			if publicEqual(d.(*dns.DNSKEY), k.DNSKEY) {
				dup = true
			}
		}
		if dup {
			continue
		}
		d := dns.Copy(k.DNSKEY).(*dns.DNSKEY)
		d.Hdr = dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: opts.DNSKEYTTL}
		dnskeys = append(dnskeys, d)
	}
	apex.sets[dns.TypeDNSKEY] = dnskeys

	// RFC 9077: negative answers are cached for min(SOA TTL, SOA minimum),
	// so the records proving them carry that TTL.
	negTTL := min(soa.Hdr.Ttl, soa.Minttl)
	if opts.NSEC3 {
		err = addNSEC3(ctx, nodes, origin, negTTL, opts.OptOut)
	} else {
		err = addNSEC(nodes, origin, negTTL)
	}
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", origin, err)
	}

	var out []dns.RR
	var jobs []signJob
	for _, n := range nodes {
		for t, set := range n.sets {
			out = append(out, set...)
			if n.below || (n.cut && t != dns.TypeDS && t != dns.TypeNSEC) {
				continue
			}
			signers := zsks
			if t == dns.TypeDNSKEY {
				signers = ksks
			}
			for _, k := range signers {
				jobs = append(jobs, signJob{rrset: set, key: k})
			}
		}
	}
	sigs, err := signAll(ctx, jobs, origin, opts)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", origin, err)
	}
	out = append(out, sigs...)
	if err := canonicalSort(out); err != nil {
		return nil, fmt.Errorf("sign %s: sort: %w", origin, err)
	}
	return out, nil
}

// signersByAlgorithm splits keys into the ones that sign data (zsks) and
// the ones that sign the DNSKEY RRset (ksks), per algorithm.
func signersByAlgorithm(origin string, keys []*Key) (zsks, ksks []*Key, err error) {
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("sign %s: no keys", origin)
	}
	type pair struct{ z, k []*Key }
	byAlg := map[uint8]*pair{}
	var algs []uint8
	for _, k := range keys {
		if k == nil || k.DNSKEY == nil || k.Signer == nil {
			return nil, nil, fmt.Errorf("sign %s: key %v is incomplete (no DNSKEY or no private key)", origin, k)
		}
		if !dns.IsFqdn(k.DNSKEY.Hdr.Name) || dns.CanonicalName(k.DNSKEY.Hdr.Name) != origin {
			return nil, nil, fmt.Errorf("sign %s: key %v belongs to %s", origin, k, k.DNSKEY.Hdr.Name)
		}
		if k.Tag != k.DNSKEY.KeyTag() {
			return nil, nil, fmt.Errorf("sign %s: key %v: tag field does not match the DNSKEY's tag %d", origin, k, k.DNSKEY.KeyTag())
		}
		p := byAlg[k.DNSKEY.Algorithm]
		if p == nil {
			p = &pair{}
			byAlg[k.DNSKEY.Algorithm] = p
			algs = append(algs, k.DNSKEY.Algorithm)
		}
		if k.KSK {
			p.k = append(p.k, k)
		} else {
			p.z = append(p.z, k)
		}
	}
	for _, a := range algs {
		p := byAlg[a]
		switch {
		case len(p.z) == 0:
			zsks = append(zsks, p.k...)
			ksks = append(ksks, p.k...)
		case len(p.k) == 0:
			zsks = append(zsks, p.z...)
			ksks = append(ksks, p.z...)
		default:
			zsks = append(zsks, p.z...)
			ksks = append(ksks, p.k...)
		}
	}
	return zsks, ksks, nil
}

// collect groups rrs by owner name and type, dropping DNSSEC records and
// duplicates. It copies every record it keeps.
func collect(rrs []dns.RR, origin string) (map[string]*node, error) {
	nodes := make(map[string]*node, len(rrs)/2)
	for _, rr := range rrs {
		if rr == nil {
			continue
		}
		h := rr.Header()
		if isDNSSEC(h.Rrtype) {
			continue
		}
		if h.Class != dns.ClassINET {
			return nil, fmt.Errorf("sign %s: %s/%s: class %s, only IN is signed", origin, h.Name, dns.TypeToString[h.Rrtype], dns.ClassToString[h.Class])
		}
		if !dns.IsFqdn(h.Name) {
			return nil, fmt.Errorf("sign %s: owner %q is not absolute", origin, h.Name)
		}
		name := dns.CanonicalName(h.Name)
		if !dns.IsSubDomain(origin, name) {
			return nil, fmt.Errorf("sign %s: owner %s is outside the zone", origin, h.Name)
		}
		if h.Rrtype == dns.TypeSOA && name != origin {
			return nil, fmt.Errorf("sign %s: SOA at %s, below the apex", origin, h.Name)
		}
		c := dns.Copy(rr)
		c.Header().Name = name
		n := nodes[name]
		if n == nil {
			n = &node{name: name, sets: map[uint16][]dns.RR{}}
			nodes[name] = n
		}
		set := n.sets[h.Rrtype]
		dup := false
		for _, o := range set {
			if dns.IsDuplicate(o, c) {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if len(set) > 0 && set[0].Header().Ttl != h.Ttl {
			return nil, fmt.Errorf("sign %s: RRset %s/%s has TTLs %d and %d; one RRset, one TTL (RFC 2181 §5.2)",
				origin, name, dns.TypeToString[h.Rrtype], set[0].Header().Ttl, h.Ttl)
		}
		n.sets[h.Rrtype] = append(set, c)
	}
	return nodes, nil
}

// markCuts flags delegation points (NS below the apex) and the names
// below them (occluded: glue and anything else under a cut).
func markCuts(nodes map[string]*node, origin string) error {
	for name, n := range nodes {
		if name != origin && len(n.sets[dns.TypeNS]) > 0 {
			n.cut = true
		}
	}
	for name, n := range nodes {
		for p := parent(name); p != "" && p != origin && dns.IsSubDomain(origin, p); p = parent(p) {
			if a := nodes[p]; a != nil && a.cut {
				n.below = true
				break
			}
		}
		if !n.cut && !n.below && n.hasDS() {
			return fmt.Errorf("sign %s: DS at %s, which is not a delegation (no NS there)", origin, name)
		}
	}
	return nil
}

// parent strips the first label of an absolute name ("" for the root).
func parent(name string) string {
	if name == "." {
		return ""
	}
	off, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[off:]
}

// bitmap lists the types present at n in the NSEC/NSEC3 sense, in
// ascending order, with extra types added.
func bitmap(n *node, extra ...uint16) []uint16 {
	var types []uint16
	for t := range n.sets {
		if n.cut && t != dns.TypeNS && t != dns.TypeDS && t != dns.TypeNSEC {
			// Anything else at a cut (an address record for the
			// delegated name itself) is occluded, not ours to prove.
			continue
		}
		types = append(types, t)
	}
	types = append(types, extra...)
	slices.Sort(types)
	return types
}

// sortByKey sorts s by a precomputed string key per element.
func sortByKey[T any](s []T, key func(T) string) {
	slices.SortFunc(s, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}

// addNSEC links the authoritative names (apex, delegation points, other
// names not below a cut) in canonical order, the last back to the apex.
func addNSEC(nodes map[string]*node, origin string, ttl uint32) error {
	var names []*node
	for _, n := range nodes {
		if !n.below {
			names = append(names, n)
		}
	}
	if err := sortNodes(names); err != nil {
		return err
	}
	for i, n := range names {
		next := names[(i+1)%len(names)]
		// Every authoritative name gets signatures: at a cut, the NSEC
		// itself (and DS) are signed.
		types := bitmap(n, dns.TypeNSEC, dns.TypeRRSIG)
		n.sets[dns.TypeNSEC] = []dns.RR{&dns.NSEC{
			Hdr:        dns.RR_Header{Name: n.name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: ttl},
			NextDomain: next.name,
			TypeBitMap: types,
		}}
	}
	return nil
}

func sortNodes(ns []*node) error {
	keys := make(map[*node]string, len(ns))
	for _, n := range ns {
		k, err := nameKey(n.name)
		if err != nil {
			return err
		}
		keys[n] = k
	}
	sortByKey(ns, func(n *node) string { return keys[n] })
	return nil
}

// RFC 9276 §3.1: no extra iterations and no salt; both only cost
// validators CPU without making zone walking meaningfully harder.
const (
	nsec3Iterations = 0
	nsec3Salt       = ""
)

// addNSEC3 builds the NSEC3 chain (RFC 5155 §7.1): one record per
// authoritative name and per empty non-terminal, skipping insecure
// delegations under opt-out, ordered by hash, and NSEC3PARAM at the apex.
func addNSEC3(ctx context.Context, nodes map[string]*node, origin string, ttl uint32, optOut bool) error {
	// Empty non-terminals between the apex and any authoritative name
	// need their own NSEC3, or a validator could not tell "exists, no
	// data" from "does not exist".
	var names []string
	for name, n := range nodes {
		if !n.below {
			names = append(names, name)
		}
	}
	for _, name := range names {
		for p := parent(name); p != "" && p != origin && dns.IsSubDomain(origin, p); p = parent(p) {
			if nodes[p] != nil {
				break
			}
			e := &node{name: p, sets: map[uint16][]dns.RR{}}
			nodes[p] = e
		}
	}

	nodes[origin].sets[dns.TypeNSEC3PARAM] = []dns.RR{&dns.NSEC3PARAM{
		Hdr:        dns.RR_Header{Name: origin, Rrtype: dns.TypeNSEC3PARAM, Class: dns.ClassINET, Ttl: 0},
		Hash:       dns.SHA1,
		Flags:      0, // RFC 5155 §4.1.2: the opt-out flag lives only in NSEC3 records
		Iterations: nsec3Iterations,
		Salt:       nsec3Salt,
	}}

	var chain []*node
	for _, n := range nodes {
		if n.below || (optOut && n.cut && !n.hasDS()) {
			continue
		}
		chain = append(chain, n)
	}
	if err := hashAll(ctx, chain); err != nil {
		return err
	}
	sortByKey(chain, func(n *node) string { return n.hashed })
	var flags uint8
	if optOut {
		flags = 1
	}
	out := make([]*dns.NSEC3, len(chain))
	for i, n := range chain {
		if i > 0 && chain[i-1].hashed == n.hashed {
			return fmt.Errorf("NSEC3 hash collision between %s and %s", chain[i-1].name, n.name)
		}
		var types []uint16
		if n.cut {
			types = bitmap(n)
			if n.hasDS() {
				types = bitmap(n, dns.TypeRRSIG)
			}
		} else if len(n.sets) > 0 {
			types = bitmap(n, dns.TypeRRSIG)
		}
		next := chain[(i+1)%len(chain)].hashed
		out[i] = &dns.NSEC3{
			Hdr:        dns.RR_Header{Name: n.hashed + "." + origin, Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: ttl},
			Hash:       dns.SHA1,
			Flags:      flags,
			Iterations: nsec3Iterations,
			SaltLength: 0,
			Salt:       nsec3Salt,
			HashLength: 20,
			NextDomain: next,
			TypeBitMap: types,
		}
	}
	for _, r := range out {
		name := r.Hdr.Name
		if nodes[name] != nil {
			return fmt.Errorf("NSEC3 owner %s collides with a name in the zone", name)
		}
		nodes[name] = &node{name: name, sets: map[uint16][]dns.RR{dns.TypeNSEC3: {r}}}
	}
	return nil
}

// hashAll fills n.hashed (lower-case base32hex) for every node, on all
// CPUs: SHA-1 of a million names is most of the NSEC3 cost.
func hashAll(ctx context.Context, ns []*node) error {
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ns) || ctx.Err() != nil {
					return
				}
				ns[i].hashed = lowerASCII(dns.HashName(ns[i].name, dns.SHA1, nsec3Iterations, nsec3Salt))
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hash names: %w", err)
	}
	for _, n := range ns {
		if n.hashed == "" {
			return fmt.Errorf("hash name %s: failed", n.name)
		}
	}
	return nil
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// signAll runs jobs on opts.Workers goroutines. Each job writes only its
// own slot, so results need no lock and come back in job order.
func signAll(ctx context.Context, jobs []signJob, origin string, opts Options) ([]dns.RR, error) {
	inception := uint32(opts.Inception.Unix())
	expiration := uint32(opts.Expiration.Unix())
	sigs := make([]dns.RR, len(jobs))
	errs := make([]error, opts.Workers)
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) || failed.Load() {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
				j := jobs[i]
				h := j.rrset[0].Header()
				sig := &dns.RRSIG{
					Hdr:        dns.RR_Header{Name: h.Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: h.Ttl},
					Algorithm:  j.key.DNSKEY.Algorithm,
					KeyTag:     j.key.Tag,
					SignerName: origin,
					Inception:  inception,
					Expiration: expiration,
				}
				if err := sig.Sign(j.key.Signer, j.rrset); err != nil {
					errs[w] = fmt.Errorf("sign %s/%s with %v: %w", h.Name, dns.TypeToString[h.Rrtype], j.key, err)
					failed.Store(true)
					return
				}
				sigs[i] = sig
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sigs, nil
}
