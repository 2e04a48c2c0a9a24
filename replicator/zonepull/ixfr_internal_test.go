package zonepull

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// FuzzIXFRAnswer feeds record sequences to the IXFR answer reader and the
// assembly: whatever a primary sends, the result is an error or a zone at
// the serial the answer announced, never a panic.
func FuzzIXFRAnswer(f *testing.F) {
	const have = "ex. 60 IN SOA ns.ex. h.ex. 10 1 1 1 60\nex. 60 IN NS ns.ex.\na.ex. 60 IN A 192.0.2.1\n"
	f.Add("ex. 60 IN SOA ns.ex. h.ex. 11 1 1 1 60\nex. 60 IN SOA ns.ex. h.ex. 10 1 1 1 60\na.ex. 60 IN A 192.0.2.1\nex. 60 IN SOA ns.ex. h.ex. 11 1 1 1 60\nb.ex. 60 IN A 192.0.2.2\nex. 60 IN SOA ns.ex. h.ex. 11 1 1 1 60")
	f.Add("ex. 60 IN SOA ns.ex. h.ex. 10 1 1 1 60")
	f.Add("ex. 60 IN SOA ns.ex. h.ex. 12 1 1 1 60\nex. 60 IN NS ns.ex.\nex. 60 IN SOA ns.ex. h.ex. 12 1 1 1 60")
	f.Add("ex. 60 IN SOA ns.ex. h.ex. 12 1 1 1 60\nex. 60 IN SOA ns.ex. h.ex. 10 1 1 1 60\nex. 60 IN SOA ns.ex. h.ex. 11 1 1 1 60\nex. 60 IN SOA ns.ex. h.ex. 11 1 1 1 60\nc.ex. 60 IN A 192.0.2.3\nex. 60 IN SOA ns.ex. h.ex. 12 1 1 1 60\nex. 60 IN SOA ns.ex. h.ex. 12 1 1 1 60")
	base, err := zone.Parse(strings.NewReader(have), "have", "ex.")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		var rrs []dns.RR
		for _, line := range strings.Split(answer, "\n") {
			if strings.Contains(line, "$") {
				continue // directives are the zone file reader's, not a transfer's
			}
			rr, err := dns.NewRR(line)
			if err != nil || rr == nil {
				continue
			}
			rrs = append(rrs, rr)
		}
		if len(rrs) == 0 {
			return
		}
		first, ok := rrs[0].(*dns.SOA)
		if !ok || dns.CanonicalName(first.Hdr.Name) != "ex." {
			return // transfer refuses this before the sequence sees it
		}
		r := &ixfrReader{origin: "ex.", have: base.Serial}
		for i, rr := range rrs {
			done, err := r.step(rr, i == len(rrs)-1)
			if err != nil {
				return
			}
			if !done {
				continue
			}
			if i != len(rrs)-1 {
				return // records after the end: transfer refuses
			}
			z, _, err := r.assemble(base)
			if err != nil {
				return
			}
			if z.Serial != first.Serial {
				t.Fatalf("answer announced serial %d, assembled %d", first.Serial, z.Serial)
			}
			return
		}
	})
}
