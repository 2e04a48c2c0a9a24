package gates

// The dnssec gate traces to INCIDENTS.md §2, .se 12 October 2009: to stop
// the damage of the doubled-origin zone, an interim zone with correct data
// but an invalid DNSSEC signature was published, because the administrator
// could not reach the signer. A signed TLD with a bad signature is worse
// than no answer: every validating resolver turns its delegations into
// SERVFAIL. So before a signed version is stored or served, it is checked
// the way a validator would see it: the DNSKEY RRset signed by a key with
// the SEP bit that is in the set; every authoritative RRset signed by a key
// in the zone, with every algorithm of the DNSKEY set (RFC 4035 §2.2), and
// every signature verifying; every signature valid at Now and for at least
// MinSignatureValidity more (a zone that expires over the weekend is a
// pager call waiting to happen); and the NSEC or NSEC3 chain complete,
// because a hole in it makes negative answers for those names bogus.
//
// Signature verification is most of the cost on a large zone, so it runs
// on GOMAXPROCS workers. A version whose predecessor was signed and which
// has no DNSKEY is refused: publishing it strands every DS in the parent.

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

type dnssecGate struct{ c Config }

func (dnssecGate) Name() string { return GateDNSSEC }

func (g dnssecGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	if ix.diff != nil {
		// Incremental (incremental.go): kept only when it finds nothing.
		if res := g.check(ctx, ix, in, ix.diff); res.Status == StatusPass && res.Total == 0 {
			return res
		}
	}
	return g.check(ctx, ix, in, nil)
}

// check is the gate, over every name (d nil) or incrementally, over the
// names d lists (the others' signatures are only checked for their
// validity window).
func (g dnssecGate) check(ctx context.Context, ix *Index, in *Input, d *indexDiff) Result {
	col := newCollector(GateDNSSEC, g.c, ix)
	apex := ix.Apex()
	keySet := apex.Set(dns.TypeDNSKEY)
	if keySet == nil {
		z := ix.Zone()
		if ix.sigs > 0 || z.Counts["NSEC"] > 0 || z.Counts["NSEC3"] > 0 {
			col.at(nil, 0, "no-dnskey", ix.Origin(), "DNSKEY",
				"the zone has RRSIG or NSEC/NSEC3 records but no DNSKEY at the apex")
		}
		for _, p := range []*Index{ix.Previous(), ix.Published()} {
			if p != nil && p.Apex().Has(dns.TypeDNSKEY) {
				col.at(nil, 0, "signing-lost", ix.Origin(), "DNSKEY",
					"the version it replaces (serial %d) is signed, this one has no DNSKEY: every validating resolver would fail it", p.Zone().Serial)
				break
			}
		}
		if col.total > 0 {
			res := col.result("")
			res.Reason = col.list[0].Msg
			return res
		}
		return skip(GateDNSSEC, "unsigned zone (no DNSKEY at the apex)")
	}
	if in.Now.IsZero() {
		return Result{Gate: GateDNSSEC, Status: StatusFail, Reason: "no validation time: Input.Now is zero"}
	}

	keys := collectKeys(ix, keySet)
	// prev is the verified previous version whose signatures need not be
	// verified again; nil when there is none or its keys differ.
	var prev *Index
	if p := ix.Previous(); (in.PreviousVerified || in.PreviousPassed) && p != nil && sameRecords(ix, keySet, p, p.Apex().Set(dns.TypeDNSKEY)) {
		prev = p
	}
	if prev == nil {
		d = nil // other keys: every signature is verified again
	}
	reused := 0
	if !keys.sep {
		col.at(nil, keySet.Records()[0], "no-ksk", ix.Origin(), "DNSKEY",
			"the DNSKEY RRset has no zone key with the SEP bit (KSK)")
	}

	// Every signature: validity window now, verification later in parallel.
	originWire := make([]byte, 256)
	on, err := dns.PackDomainName(ix.Origin(), originWire, 0, nil, false)
	if err != nil {
		return Result{Gate: GateDNSSEC, Status: StatusFail, Reason: fmt.Sprintf("origin %s: %v", ix.Origin(), err)}
	}
	originWire = originWire[:on]
	// In batches of names: the jobs of a million-delegation zone at once
	// would be another hundred megabytes held through the whole check.
	var (
		jobs   []sigJob
		checks []setCheck
		total  int
	)
	fast := p256Keys(keys)
	nodes := ix.Nodes()
	const batch = 1 << 15
	for b0 := 0; b0 < len(nodes); b0 += batch {
		jobs, checks = jobs[:0], checks[:0]
		kept := 0
		if err := g.batch(ctx, col, ix, in, nodes[b0:min(b0+batch, len(nodes))], prev, d, keys, fast, originWire, &jobs, &checks, &reused, &kept); err != nil {
			return cancelled(GateDNSSEC, err)
		}
		total += len(jobs) + kept
	}

	z := ix.Zone()
	switch {
	case d != nil && z.Counts["NSEC"] > 0 && z.Counts["NSEC3"] == 0 && !ix.Apex().Has(dns.TypeNSEC3PARAM) && nsecStillValid(ix, d):
		chainsProven.Add(1) // the chain is what it was, and that was complete
	case d != nil && z.Counts["NSEC"] == 0 && z.Counts["NSEC3"] > 0 && nsec3StillValid(ix, d):
		chainsProven.Add(1) // the same for the NSEC3 chain
	default:
		if err := checkChains(ctx, ix, col); err != nil {
			return cancelled(GateDNSSEC, err)
		}
	}
	verified := plural(total, "signature", "signatures") + " verified"
	if prev != nil {
		verified = fmt.Sprintf("%s (%d unchanged since verified serial %d, %d verified now)",
			verified, reused, prev.Zone().Serial, total-reused)
	}
	res := col.result(fmt.Sprintf("%s, valid %s or longer; %s chain complete",
		verified, hours(g.c.MinSignatureValidity), chainKind(ix)))
	if res.Status == StatusFail {
		res.Reason = col.summary()
	}
	return res
}

// batch checks the signatures of nodes: windows and signers first, then
// verification on every core, then what each RRset's signatures add up to.
func (g dnssecGate) batch(ctx context.Context, col *collector, ix *Index, in *Input, nodes []*Node, prev *Index, d *indexDiff,
	keys zoneKeys, fast map[*dns.DNSKEY]*p256Key, originWire []byte, jobsp *[]sigJob, checksp *[]setCheck, reused, kept *int) error {
	z := ix.Zone()
	jobs, checks := *jobsp, *checksp
	defer func() { *jobsp, *checksp = jobs, checks }()
	var signer []byte
	for k, n := range nodes {
		if k%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if d != nil && !d.names[n.Name] {
			// Unchanged since a version that passed: only the
			// clock can have moved.
			for si0 := range n.Sets {
				for _, si := range n.Sets[si0].Sigs() {
					if sig, ok := parseRRSIG(z.Raw(int(si))); ok {
						g.validity(col, si, n.Name, sig.covered, sig.inception, sig.expiration, in.Now)
						*kept++
						*reused++
					}
				}
			}
			continue
		}
		var pn *Node
		if prev != nil {
			pn = prev.Node(n.Name)
		}
		for si0 := range n.Sets {
			s := &n.Sets[si0]
			var ps *RRset // the same RRset in prev, if its records are unchanged
			if p := pn.Set(s.Type); p != nil && sameRecords(ix, s, prev, p) {
				ps = p
			}
			auth := authoritative(n, s.Type)
			if auth && len(s.Sigs()) == 0 {
				col.at(nil, s.Records()[0], "unsigned", n.Name, typeName(s.Type), "RRset is not signed")
				continue
			}
			if !auth && len(s.Sigs()) > 0 {
				col.at(nil, s.Sigs()[0], "non-authoritative-sig", n.Name, typeName(s.Type),
					"RRSIG over data that is not authoritative here (delegation NS or glue); the signer does not see the delegation")
				continue
			}
			from := len(jobs)
			for _, si := range s.Sigs() {
				sig, ok := parseRRSIG(z.Raw(int(si)))
				if !ok {
					continue
				}
				g.validity(col, si, n.Name, sig.covered, sig.inception, sig.expiration, in.Now)
				if signer = appendLowerName(signer[:0], sig.signer); !bytes.Equal(signer, originWire) {
					col.at(nil, si, "foreign-signer", n.Name, typeName(s.Type),
						"RRSIG signer %s is not the zone %s", ix.RR(si).(*dns.RRSIG).SignerName, ix.Origin())
					continue
				}
				cands := keys.find(sig.keyTag, sig.alg)
				if len(cands) == 0 {
					col.at(nil, si, "unknown-key", n.Name, typeName(s.Type),
						"RRSIG by key tag %d algorithm %d, which is not in the DNSKEY RRset", sig.keyTag, sig.alg)
					continue
				}
				j := sigJob{sig: si, node: n, setIdx: uint16(si0), keys: cands}
				if len(cands) == 1 && ps != nil && hasSig(prev, ps, z.Raw(int(si))) {
					// Verified with this very key in prev.
					j.by, j.done = cands[0], true
					*reused++
				}
				jobs = append(jobs, j)
			}
			if auth {
				checks = append(checks, setCheck{node: n, set: s, from: from, to: len(jobs)})
			}
		}
		for _, si := range n.Orphans {
			covered := "?"
			if sig, ok := ix.RR(si).(*dns.RRSIG); ok {
				covered = typeName(sig.TypeCovered)
			}
			col.at(nil, si, "orphan-sig", n.Name, covered, "RRSIG covers %s, but there is no %s RRset here", covered, covered)
		}
	}

	if err := verifyAll(ctx, ix, jobs, fast); err != nil {
		return err
	}

	for _, c := range checks {
		var valid [4]uint64 // bit per algorithm number
		var verified, ksk bool
		for _, j := range jobs[c.from:c.to] {
			if j.by == nil {
				sig := ix.RR(j.sig).(*dns.RRSIG)
				col.at(nil, j.sig, "bad-signature", c.node.Name, typeName(c.set.Type),
					"RRSIG by key %d (algorithm %d) does not verify: %v", sig.KeyTag, sig.Algorithm, j.err)
				continue
			}
			valid[j.by.Algorithm/64] |= 1 << (j.by.Algorithm % 64)
			verified = true
			ksk = ksk || j.by.Flags&dns.SEP != 0 && j.by.Flags&dns.REVOKE == 0
		}
		if !verified {
			continue // every failure is already a finding of its own
		}
		for _, a := range keys.algs {
			if valid[a/64]&(1<<(a%64)) == 0 {
				col.at(nil, c.set.Records()[0], "missing-algorithm", c.node.Name, typeName(c.set.Type),
					"not signed with algorithm %d, which the DNSKEY RRset has (RFC 4035 §2.2)", a)
			}
		}
		if c.set.Type == dns.TypeDNSKEY && c.node.Apex && !ksk && keys.sep {
			col.at(nil, c.set.Records()[0], "dnskey-not-ksk-signed", c.node.Name, "DNSKEY",
				"the DNSKEY RRset is not signed by any key with the SEP bit (KSK); a validator starting from the DS cannot get past it")
		}
	}

	return nil
}

// chainsProven counts chains proven incrementally (the tests check the
// proof is not always given up on).
var chainsProven atomic.Int64

// authoritative reports whether the RRset of type t at n is data the
// zone is authoritative for, and so must be signed (RFC 4035 §2.2): not
// anything below a delegation, and at a delegation point only DS and NSEC.
func authoritative(n *Node, t uint16) bool {
	switch {
	case n.Below:
		return false
	case n.Cut:
		return t == dns.TypeDS || t == dns.TypeNSEC
	}
	return true
}

// validity checks one signature's window against now.
func (g dnssecGate) validity(col *collector, si int32, name string, covered uint16, inception, expiration uint32, now time.Time) {
	incep, exp := sigTime(inception, now), sigTime(expiration, now)
	t := typeName(covered)
	switch {
	case now.Before(incep):
		col.at(nil, si, "not-yet-valid", name, t, "RRSIG not valid before %s (inception), checked at %s",
			incep.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case now.After(exp):
		col.at(nil, si, "expired", name, t, "RRSIG expired %s (%s ago)", exp.UTC().Format(time.RFC3339), hours(now.Sub(exp)))
	case exp.Sub(now) < g.c.MinSignatureValidity:
		col.at(nil, si, "expiring", name, t, "RRSIG expires in %s, minimum %s", hours(exp.Sub(now)), hours(g.c.MinSignatureValidity))
	}
}

// sigTime turns an RRSIG timestamp (32-bit seconds, RFC 1982 arithmetic,
// RFC 4034 §3.1.5) into the absolute time closest to now.
func sigTime(ts uint32, now time.Time) time.Time {
	n := now.Unix()
	return time.Unix(n+int64(int32(ts-uint32(n))), 0)
}

// hours prints a duration the way operators say it: "40h", "3d2h" is
// overkill; under an hour, minutes.
func hours(d time.Duration) string {
	if d >= time.Hour || d <= -time.Hour {
		return fmt.Sprintf("%dh", int64(d/time.Hour))
	}
	return d.Round(time.Second).String()
}

// zoneKeys are the usable DNSKEYs at the apex, by key tag.
type zoneKeys struct {
	byTag map[uint16][]*dns.DNSKEY
	found map[uint32][]*dns.DNSKEY // find's answers
	algs  []uint8                  // algorithms present, in order of first appearance
	sep   bool                     // some zone key has the SEP bit
}

func collectKeys(ix *Index, set *RRset) zoneKeys {
	k := zoneKeys{byTag: map[uint16][]*dns.DNSKEY{}, found: map[uint32][]*dns.DNSKEY{}}
	for _, i := range set.Records() {
		key, ok := ix.RR(i).(*dns.DNSKEY)
		if !ok || key.Flags&dns.ZONE == 0 || key.Protocol != 3 {
			continue // not a zone signing key (RFC 4034 §2.1.1)
		}
		tag := key.KeyTag()
		k.byTag[tag] = append(k.byTag[tag], key)
		if key.Flags&dns.REVOKE != 0 {
			// RFC 5011: a revoked key still signs the DNSKEY set
			// but no longer counts as a key the zone is signed with.
			continue
		}
		if key.Flags&dns.SEP != 0 {
			k.sep = true
		}
		seen := false
		for _, a := range k.algs {
			seen = seen || a == key.Algorithm
		}
		if !seen {
			k.algs = append(k.algs, key.Algorithm)
		}
	}
	return k
}

// find returns the keys with tag and algorithm alg. The slice is shared
// between calls (a zone has a million signatures by one or two keys).
func (k zoneKeys) find(tag uint16, alg uint8) []*dns.DNSKEY {
	id := uint32(tag)<<8 | uint32(alg)
	if out, ok := k.found[id]; ok {
		return out
	}
	var out []*dns.DNSKEY
	for _, key := range k.byTag[tag] {
		if key.Algorithm == alg {
			out = append(out, key)
		}
	}
	k.found[id] = out
	return out
}

// sigJob is one signature to verify against its candidate keys (a key tag
// is not unique, so several may have to be tried). The worker that runs
// it writes only its own by and err.
type sigJob struct {
	sig    int32
	setIdx uint16 // the RRset is node.Sets[setIdx]
	done   bool   // known to verify with by (incremental check): not run
	node   *Node
	keys   []*dns.DNSKEY
	by     *dns.DNSKEY // the key it verified with; nil if none
	err    error
}

func (j *sigJob) set() *RRset { return &j.node.Sets[j.setIdx] }

// setCheck is one authoritative RRset and its jobs[from:to].
type setCheck struct {
	node     *Node
	set      *RRset
	from, to int
}

// verifyAll runs every job on GOMAXPROCS workers, in chunks so the shared
// counter is not touched per signature.
func verifyAll(ctx context.Context, ix *Index, jobs []sigJob, fast map[*dns.DNSKEY]*p256Key) error {
	const chunk = 64
	workers := runtime.GOMAXPROCS(0)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rrs []dns.RR
			var c digestCatcher
			var x wireScratch
			for {
				start := int(next.Add(chunk)) - chunk
				if start >= len(jobs) || ctx.Err() != nil {
					return
				}
				for i := start; i < min(start+chunk, len(jobs)); i++ {
					if !jobs[i].done {
						rrs = verifyOne(ix, &jobs[i], rrs[:0], fast, &c, &x)
					}
				}
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func verifyOne(ix *Index, j *sigJob, rrs []dns.RR, fast map[*dns.DNSKEY]*p256Key, c *digestCatcher, x *wireScratch) []dns.RR {
	if verifyWire(ix, j, fast, c, x) {
		return rrs
	}
	sig := ix.RR(j.sig).(*dns.RRSIG)
	for _, i := range j.set().Records() {
		rrs = append(rrs, ix.RR(i))
	}
	// RR decodes on every call: the first record's owner is taken from
	// the one already fetched.
	first := rrs[0].Header().Name
	// miekg wants one owner spelling per RRset; a zone may mix cases
	// ("NS2" and "ns2"), which is the same name. Copy only then.
	for k, rr := range rrs {
		if rr.Header().Name != first {
			c := dns.Copy(rr)
			c.Header().Name = first
			rrs[k] = c
		}
	}
	for _, key := range j.keys {
		if pk := fast[key]; pk != nil && canVerifyFast(sig, key, rrs) {
			if raw, err := fromBase64(sig.Signature); err == nil && len(raw) == 64 {
				if hash, ok := signedHash(sig, rrs, c); ok {
					if !pk.verify(hash, raw, &c.scratch) {
						j.err = dns.ErrSig
						continue
					}
					j.by, j.err = key, nil
					return rrs
				}
			}
		}
		if err := sig.Verify(key, rrs); err != nil {
			j.err = err
			continue
		}
		j.by, j.err = key, nil
		return rrs
	}
	return rrs
}

// verifyWire verifies j on the packed records (wiresig.go) when every
// candidate key is a P-256 key and the wire path applies; it reports
// whether it decided the job.
func verifyWire(ix *Index, j *sigJob, fast map[*dns.DNSKEY]*p256Key, c *digestCatcher, x *wireScratch) bool {
	sig, ok := parseRRSIG(ix.Zone().Raw(int(j.sig)))
	if !ok || len(sig.signature) != 64 {
		return false
	}
	for _, key := range j.keys {
		if fast[key] == nil || key.Hdr.Class != sig.class {
			return false
		}
	}
	hash, ok := wireSignedHash(ix, j.node.Name, j.set().Records(), sig, x)
	if !ok {
		return false
	}
	for _, key := range j.keys {
		if fast[key].verify(hash, sig.signature, &c.scratch) {
			j.by, j.err = key, nil
			return true
		}
	}
	j.err = dns.ErrSig
	return true
}

// sameRecords reports whether RRset a of index x and RRset b of index y hold
// the same records (by RDATA and owner, TTL aside: a signature covers
// its original TTL, not the records'). Both indexes keep a set's records
// in canonical text order, so equal sets line up; a set that does not
// line up counts as changed, which only costs a verification.
func sameRecords(x *Index, a *RRset, y *Index, b *RRset) bool {
	if a == nil || b == nil || len(a.Records()) != len(b.Records()) {
		return false
	}
	for i, ri := range a.Records() {
		if !sameButTTL(x.Zone().Raw(int(ri)), y.Zone().Raw(int(b.Records()[i]))) {
			return false
		}
	}
	return true
}

// hasSig reports whether set s of index x carries a signature identical
// to the packed RRSIG raw (every RDATA field, the signature bytes
// included).
func hasSig(x *Index, s *RRset, raw []byte) bool {
	for _, i := range s.Sigs() {
		if sameButTTL(x.Zone().Raw(int(i)), raw) {
			return true
		}
	}
	return false
}

// sameButTTL compares two packed records (zone.Zone.Raw) but for their
// TTLs.
func sameButTTL(a, b []byte) bool {
	return len(a) == len(b) && bytes.Equal(a[:4], b[:4]) && bytes.Equal(a[8:], b[8:])
}
