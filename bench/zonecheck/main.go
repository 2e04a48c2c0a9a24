// Command zonecheck-gen writes the signed zones bench/zonecheck/run.sh
// times the verifiers on: a registry-shaped TLD of N delegations (every
// fourth with in-zone glue, every third with a DS, the shape of the lab's
// generator) signed with ECDSAP256SHA256 and NSEC, and the next version of
// it that differs by -changes delegations.
//
// The next version is signed the way a production signer does it: RRsets
// that did not change keep their signatures, only the changed ones (and
// the SOA, and the NSEC records around the changes) get new ones. Signing
// it from scratch would give every RRSIG new bytes (ECDSA signatures are
// randomised), and no incremental check could then skip anything a real
// version lets it skip.
//
//	go run ./bench/zonecheck -n 100000 -dir /tmp/zc
//
// writes /tmp/zc/base.zone (serial 2026010100) and /tmp/zc/next.zone
// (serial 2026010101), both valid for 14 days from now.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/zonegen"
	"github.com/regdr/regdr/internal/zonesign"
)

const (
	origin = "test."
	serial = 2026010100
)

func main() {
	n := flag.Int("n", 100000, "delegations in the base version")
	changes := flag.Int("changes", 1000, "delegations that differ in the next version (a third removed, a third added, a third with new NS)")
	dir := flag.String("dir", "", "output directory (required)")
	nsec3 := flag.Bool("nsec3", false, "sign with NSEC3 and opt-out (as many TLDs do) instead of NSEC")
	flag.Parse()
	if *dir == "" || *n < 10 || *changes < 0 || *changes > *n/2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*dir, *n, *changes, zonesign.Options{NSEC3: *nsec3, OptOut: *nsec3}); err != nil {
		log.Fatal(err)
	}
}

func run(dir string, n, changes int, opts zonesign.Options) error {
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return err
	}
	ksk, err := zonesign.GenerateKey(filepath.Join(dir, "keys"), origin, dns.ECDSAP256SHA256, true)
	if err != nil {
		return err
	}
	zsk, err := zonesign.GenerateKey(filepath.Join(dir, "keys"), origin, dns.ECDSAP256SHA256, false)
	if err != nil {
		return err
	}
	keys := []*zonesign.Key{ksk, zsk}
	now := time.Now().Truncate(time.Hour)
	opts.Inception, opts.Expiration = now.Add(-time.Hour), now.Add(14*24*time.Hour)

	base := snapshot(n)
	next := change(base, n, changes)

	start := time.Now()
	baseRRs, err := build(base, serial, keys, opts)
	if err != nil {
		return err
	}
	log.Printf("base: %d delegations, %d records signed in %s", len(base.Delegations), len(baseRRs), time.Since(start).Round(time.Millisecond))
	if err := zonesign.WriteFileAtomic(filepath.Join(dir, "base.zone"), baseRRs); err != nil {
		return err
	}

	start = time.Now()
	nextRRs, err := build(next, serial+1, keys, opts)
	if err != nil {
		return err
	}
	kept := zonesign.KeepSignatures(baseRRs, nextRRs)
	log.Printf("next: %d delegations, %d records; %d RRSIGs kept from base in %s", len(next.Delegations), len(nextRRs), kept, time.Since(start).Round(time.Millisecond))
	return zonesign.WriteFileAtomic(filepath.Join(dir, "next.zone"), nextRRs)
}

// snapshot is the base registry: d0000000 ... d<n-1>.
func snapshot(n int) zonegen.Snapshot {
	s := zonegen.Snapshot{Glue: map[string][]netip.Addr{}}
	for i := range n {
		s.Delegations = append(s.Delegations, delegation(&s, i, 0))
	}
	return s
}

// delegation i; gen > 0 gives it other name servers.
func delegation(s *zonegen.Snapshot, i, gen int) zonegen.Delegation {
	label := fmt.Sprintf("d%07d", i)
	h := (i + gen*7) % 50
	d := zonegen.Delegation{Label: label, NS: []string{
		fmt.Sprintf("ns1.hosting%d.example.", h), fmt.Sprintf("ns2.hosting%d.example.", h)}}
	if i%4 == 0 {
		host := "ns1." + label + ".test."
		d.NS[0] = host
		s.Glue[host] = []netip.Addr{netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})}
	}
	if i%3 == 0 {
		d.DS = []zonegen.DS{{KeyTag: uint16(i), Algorithm: 13, DigestType: 2, Digest: fmt.Sprintf("%064x", i)}}
	}
	return d
}

// change spreads changes over the whole zone: a third of them removed, a
// third moved to other name servers, a third new names after the last.
func change(base zonegen.Snapshot, n, changes int) zonegen.Snapshot {
	next := zonegen.Snapshot{Glue: map[string][]netip.Addr{}}
	removed, moved := changes/3, changes/3
	added := changes - removed - moved
	step := n / max(removed+moved, 1)
	for i := range base.Delegations {
		k := i / max(step, 1)
		switch {
		case i%max(step, 1) == 0 && k < removed:
			continue
		case i%max(step, 1) == 0 && k < removed+moved:
			next.Delegations = append(next.Delegations, delegation(&next, i, 1))
		default:
			next.Delegations = append(next.Delegations, delegation(&next, i, 0))
		}
	}
	for i := n; i < n+added; i++ {
		next.Delegations = append(next.Delegations, delegation(&next, i, 0))
	}
	return next
}

func build(s zonegen.Snapshot, serial uint32, keys []*zonesign.Key, opts zonesign.Options) ([]dns.RR, error) {
	rrs, err := zonegen.Build(s, zonegen.Params{
		Origin: origin, Serial: serial,
		ApexNS:   []string{"ns1.nic.test.", "a.nic.example."},
		ApexGlue: map[string][]netip.Addr{"ns1.nic.test.": {netip.MustParseAddr("192.0.2.1")}},
	})
	if err != nil {
		return nil, fmt.Errorf("build serial %d: %w", serial, err)
	}
	signed, err := zonesign.Sign(context.Background(), rrs, origin, keys, opts)
	if err != nil {
		return nil, fmt.Errorf("sign serial %d: %w", serial, err)
	}
	return signed, nil
}
