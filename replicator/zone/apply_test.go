package zone

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Apply gives exactly the version a build from scratch of the same records
// gives: same digest, counts, serial and records in the same order.
func TestApplyMatchesRebuild(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	kinds := []string{
		"d%[1]d.test. 3600 IN NS ns1.d%[1]d.test.",
		"d%[1]d.test. 3600 IN NS NS2.example.",
		"d%[1]d.test. 3600 IN DS 1 13 2 %064[1]x",
		"ns1.d%[1]d.test. 300 IN A 192.0.2.%[2]d",
		"x%[2]d.test. 60 IN TXT \"t%[1]d\"",
		"test. 300 IN TXT \"apex %[1]d\"",
	}
	for round := range 30 {
		base, err := Parse(stringsReader(randomZone(r, 400, kinds)), "base.zone", "test.")
		if err != nil {
			t.Fatal(err)
		}
		rrs := base.RRs()
		var del, add []dns.RR
		// the SOA moves on, as in every IXFR
		soa := dns.Copy(rrs[0]).(*dns.SOA)
		del = append(del, rrs[0])
		soa.Serial += uint32(1 + round)
		add = append(add, soa)
		keep := []dns.RR{soa}
		for _, rr := range rrs[1:] {
			switch r.IntN(10) {
			case 0:
				del = append(del, rr)
				continue
			case 1:
				if _, ok := rr.(*dns.NS); ok {
					del = append(del, rr)
					n := dns.Copy(rr).(*dns.NS)
					n.Ns = fmt.Sprintf("ns%d.elsewhere.example.", r.IntN(1000))
					add, keep = append(add, n), append(keep, n)
					continue
				}
			}
			keep = append(keep, rr)
		}
		for i := range 20 {
			rr, err := dns.NewRR(fmt.Sprintf("new%d-%d.test. 3600 IN NS ns.new.example.", round, i))
			if err != nil {
				t.Fatal(err)
			}
			add, keep = append(add, rr), append(keep, rr)
		}
		if round%3 == 0 {
			// a record added that is already there is kept once
			add = append(add, keep[len(keep)/2])
		}
		got, err := Apply(base, del, add)
		if err != nil {
			t.Fatalf("round %d: Apply: %v", round, err)
		}
		want, err := FromRecords("test.", keep)
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != want.Digest || got.Serial != want.Serial || got.Len() != want.Len() || !mapsEqual(got.Counts, want.Counts) {
			t.Fatalf("round %d: Apply gives digest %s serial %d, %d records %v; rebuild %s %d, %d %v",
				round, got.Digest, got.Serial, got.Len(), got.Counts, want.Digest, want.Serial, want.Len(), want.Counts)
		}
		for i := range got.Len() {
			if a, b := got.RR(i).String(), want.RR(i).String(); a != b {
				t.Fatalf("round %d: record %d is %s, want %s", round, i, a, b)
			}
		}
		if got.Names() != want.Names() {
			t.Fatalf("round %d: %d names, want %d", round, got.Names(), want.Names())
		}
		// Diff finds the same difference
		d2, a2 := Diff(base, got)
		if again, err := Apply(base, d2, a2); err != nil || again.Digest != got.Digest {
			t.Fatalf("round %d: Apply(Diff): %v, digest %s, want %s", round, err, again.Digest, got.Digest)
		}
		if d, a := Diff(got, got); len(d)+len(a) != 0 {
			t.Fatalf("round %d: a version differs from itself by -%d +%d", round, len(d), len(a))
		}
		// and it applies again on top of itself
		if again, err := Apply(got, nil, nil); err != nil || again.Digest != got.Digest {
			t.Fatalf("round %d: empty difference: %v, digest %s vs %s", round, err, again.Digest, got.Digest)
		}
	}
}

func TestApplyRefusesWhatDoesNotApply(t *testing.T) {
	base, err := Parse(stringsReader("test. 3600 IN SOA ns. host. 1 2 3 4 5\ntest. 3600 IN NS ns.example.\na.test. 60 IN A 192.0.2.1\n"), "b", "test.")
	if err != nil {
		t.Fatal(err)
	}
	missing, _ := dns.NewRR("b.test. 60 IN A 192.0.2.2")
	if _, err := Apply(base, []dns.RR{missing}, nil); !errors.Is(err, ErrDeltaMismatch) {
		t.Errorf("deleting a record that is not there: %v, want ErrDeltaMismatch", err)
	}
	soa2, _ := dns.NewRR("test. 3600 IN SOA ns. host. 2 2 3 4 5")
	if _, err := Apply(base, nil, []dns.RR{soa2}); !errors.Is(err, ErrSeveralSOA) {
		t.Errorf("a second SOA: %v, want ErrSeveralSOA", err)
	}
	if _, err := Apply(base, []dns.RR{base.RR(0)}, nil); !errors.Is(err, ErrNoSOA) {
		t.Errorf("the SOA deleted: %v, want ErrNoSOA", err)
	}
	gone, err := Apply(base, []dns.RR{base.RR(1)}, nil) // a.test. A
	if err != nil || gone.Names() != 1 || gone.Len() != 2 {
		t.Fatalf("last record of a name deleted: %v, %d names %d records", err, gone.Names(), gone.Len())
	}
}

func mapsEqual(a, b map[string]int) bool {
	keys := func(m map[string]int) []string {
		var k []string
		for x, n := range m {
			if n != 0 {
				k = append(k, x)
			}
		}
		slices.Sort(k)
		return k
	}
	if !slices.Equal(keys(a), keys(b)) {
		return false
	}
	for k, n := range a {
		if b[k] != n {
			return false
		}
	}
	return true
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

// A version made by many differences does not keep every record it ever
// replaced: its storage stays within a small factor of its records.
func TestApplyCompacts(t *testing.T) {
	defer func(f int) { compactFloor = f }(compactFloor)
	compactFloor = 0
	var b strings.Builder
	b.WriteString("test. 3600 IN SOA ns. host. 1 2 3 4 5\ntest. 3600 IN NS ns.example.\n")
	for i := range 20000 {
		fmt.Fprintf(&b, "t%d.test. 60 IN TXT \"%0200d\"\n", i, i) // generation 0
	}
	z, err := Parse(strings.NewReader(b.String()), "big", "test.")
	if err != nil {
		t.Fatal(err)
	}
	gen := make([]int, 20000) // each name's current generation
	txt := func(k, g int) dns.RR {
		rr, err := dns.NewRR(fmt.Sprintf("t%d.test. 60 IN TXT \"%0200d\"", k, k+g*100000))
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}
	for round := range 80 {
		soa := z.SOA()
		next := dns.Copy(soa).(*dns.SOA)
		next.Serial++
		del, add := []dns.RR{soa}, []dns.RR{next}
		for i := round * 500; i < (round+1)*500; i++ {
			k := i % 20000
			del, add = append(del, txt(k, gen[k])), append(add, txt(k, gen[k]+1))
			gen[k]++
		}
		if z, err = Apply(z, del, add); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	total := 0
	for _, a := range z.arenas {
		total += len(a)
	}
	if total > 2*z.wire+maxRRWire || z.wire <= 0 {
		t.Fatalf("arenas hold %d bytes for %d bytes of records", total, z.wire)
	}
	want, err := FromRecords("test.", z.RRs())
	if err != nil || want.Digest != z.Digest {
		t.Fatalf("after compaction the records are not what they were: %v", err)
	}
	if want.wire != z.wire {
		t.Errorf("wire size %d, a fresh build says %d", z.wire, want.wire)
	}
}

// A difference with a record that has no owner is refused, not packed
// into garbage.
func TestApplyRefusesOwnerless(t *testing.T) {
	base, err := Parse(stringsReader("test. 3600 IN SOA ns. host. 1 2 3 4 5\ntest. 3600 IN NS ns.example.\n"), "b", "test.")
	if err != nil {
		t.Fatal(err)
	}
	a := &dns.A{Hdr: dns.RR_Header{Name: "", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 1}}
	if _, err := Apply(base, nil, []dns.RR{a}); err == nil {
		t.Fatal("a record without an owner name was applied")
	}
}
