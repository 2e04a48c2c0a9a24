package zonestore

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Changes is what changed from one version to another. (Named for what it
// holds; the function that computes it is Diff, and Go allows only one
// of them to be called Diff.)
type Changes struct {
	// Added are records in the new version and not the old; Removed the
	// reverse. Both are in canonical text order. A changed record (new
	// TTL, new NS target) is one removal and one addition, as in IXFR
	// (RFC 1995), which has no "modify".
	Added, Removed []dns.RR
}

// Diff compares versions a (old) and b (new) record by record, on the
// canonical text zone.Digest uses: owner names compare case-insensitively,
// the TTL counts, RDATA compares exactly. A nil a or b is an empty zone,
// so Diff(nil, b) lists all of b as added.
func Diff(a, b *zone.Zone) Changes {
	at, bt := sortedTexts(a), sortedTexts(b)
	var d Changes
	i, j := 0, 0
	for i < len(at) || j < len(bt) {
		switch {
		case j == len(bt) || i < len(at) && at[i].text < bt[j].text:
			d.Removed = append(d.Removed, at[i].rr)
			i++
		case i == len(at) || bt[j].text < at[i].text:
			d.Added = append(d.Added, bt[j].rr)
			j++
		default:
			i++
			j++
		}
	}
	return d
}

type textRR struct {
	text string
	rr   dns.RR
}

// sortedTexts is z's records with their canonical text, sorted by it and
// without duplicates. zone keeps its records in this order but for the SOA,
// so the sort is nearly free.
func sortedTexts(z *zone.Zone) []textRR {
	if z == nil {
		return nil
	}
	out := make([]textRR, 0, z.Len())
	for _, rr := range z.All() {
		if rr != nil {
			out = append(out, textRR{zone.CanonicalText(rr), rr})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].text < out[j].text })
	return slices.CompactFunc(out, func(x, y textRR) bool { return x.text == y.text })
}

// Empty reports no change.
func (d Changes) Empty() bool { return len(d.Added) == 0 && len(d.Removed) == 0 }

// ChangeSummary counts a Changes' records by type mnemonic.
type ChangeSummary struct {
	Added, Removed map[string]int
}

// Summary counts d's records by type.
func (d Changes) Summary() ChangeSummary {
	s := ChangeSummary{Added: map[string]int{}, Removed: map[string]int{}}
	for _, rr := range d.Added {
		s.Added[typeName(rr.Header().Rrtype)]++
	}
	for _, rr := range d.Removed {
		s.Removed[typeName(rr.Header().Rrtype)]++
	}
	return s
}

// String is one line for a log or `regdr zone diff`, types in
// alphabetical order: "+3 -2 (DS -1, NS +2 -1, SOA +1)" or "no change".
func (s ChangeSummary) String() string {
	add, rem := 0, 0
	types := map[string]bool{}
	for t, n := range s.Added {
		add += n
		types[t] = true
	}
	for t, n := range s.Removed {
		rem += n
		types[t] = true
	}
	if add == 0 && rem == 0 {
		return "no change"
	}
	parts := make([]string, 0, len(types))
	for _, t := range slices.Sorted(maps.Keys(types)) {
		var p []string
		if n := s.Added[t]; n > 0 {
			p = append(p, fmt.Sprintf("+%d", n))
		}
		if n := s.Removed[t]; n > 0 {
			p = append(p, fmt.Sprintf("-%d", n))
		}
		parts = append(parts, t+" "+strings.Join(p, " "))
	}
	return fmt.Sprintf("+%d -%d (%s)", add, rem, strings.Join(parts, ", "))
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}
