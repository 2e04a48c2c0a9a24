package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonepull"
)

// sampleSize is how many random delegations are compared at each public
// secondary after a publication: enough to catch a truncated or stale zone
// (RIPE 2012: 43% of delegations missing) with near certainty, few enough
// to cost a few milliseconds.
const sampleSize = 20

// delegations maps each delegation point of z to its sorted NS targets.
func delegations(z *zone.Zone) map[string][]string {
	out := map[string][]string{}
	apex := dns.CanonicalName(z.Origin)
	for _, rr := range z.Records {
		if ns, ok := rr.(*dns.NS); ok {
			owner := dns.CanonicalName(ns.Hdr.Name)
			if owner != apex {
				out[owner] = append(out[owner], dns.CanonicalName(ns.Ns))
			}
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

// compareNS says how a secondary's answer differs from what was published.
func compareNS(owner string, want, got []string) string {
	slices.Sort(got)
	if slices.Equal(want, got) {
		return ""
	}
	if len(got) == 0 {
		return owner + ": not delegated at the secondary"
	}
	return fmt.Sprintf("%s: NS %s at the secondary, published %s", owner, strings.Join(got, " "), strings.Join(want, " "))
}

// verifySecondaries waits until every public secondary serves the new
// serial, then compares sampled delegations with the published version. An
// "OK" from NOTIFY only means the secondary was told; this checks what it
// answers.
func (a *Agent) verifySecondaries(ctx context.Context, z *zone.Zone) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	dels := delegations(z)
	owners := make([]string, 0, len(dels))
	for o := range dels {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	rand.Shuffle(len(owners), func(i, j int) { owners[i], owners[j] = owners[j], owners[i] })
	owners = owners[:min(sampleSize, len(owners))]
	for _, sec := range a.cfg.Secondary {
		c := status.SecondaryCheck{Name: sec.Name, Addr: sec.Addr, Zone: z.Origin, Published: z.Serial}
		for {
			qctx, qc := context.WithTimeout(ctx, time.Second)
			got, err := zonepull.QuerySerial(qctx, sec.Addr, z.Origin)
			qc()
			c.Serial = got
			if err == nil && !zone.SerialLess(got, z.Serial) {
				c.Error = ""
				break
			}
			if err != nil {
				c.Error = err.Error()
			} else {
				c.Error = fmt.Sprintf("serves serial %d, published %d", got, z.Serial)
			}
			if cur := a.dns.Zone(z.Origin); cur != nil && cur.Serial != z.Serial {
				return // superseded: the newer version's check takes over
			}
			select {
			case <-ctx.Done():
				a.recordCheck(c)
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		if c.Serial == z.Serial {
			c.Sampled = len(owners)
			for _, o := range owners {
				got, err := queryNS(ctx, sec.Addr, o)
				if err != nil {
					c.Mismatches = append(c.Mismatches, o+": "+err.Error())
					continue
				}
				if d := compareNS(o, dels[o], got); d != "" {
					c.Mismatches = append(c.Mismatches, d)
				}
			}
		}
		a.recordCheck(c)
	}
}

func (a *Agent) recordCheck(c status.SecondaryCheck) {
	c.At = time.Now()
	a.mu.Lock()
	a.secondaries[c.Name+" "+c.Zone] = c
	a.mu.Unlock()
	a.m.secondarySerial.WithLabelValues(c.Name, c.Zone).Set(float64(c.Serial))
	a.m.secondaryMismatches.WithLabelValues(c.Name, c.Zone).Set(float64(len(c.Mismatches)))
	if len(c.Mismatches) > 0 || c.Error != "" {
		a.log.Error("secondary does not serve what was published", "secondary", c.Name, "zone", c.Zone,
			"serial", c.Serial, "published", c.Published, "err", c.Error, "mismatches", strings.Join(c.Mismatches, "; "))
	}
}

// queryNS asks a secondary (non-recursively) for owner's NS set; a
// delegation comes back as a referral in the authority section.
func queryNS(ctx context.Context, addr, owner string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(owner, dns.TypeNS)
	m.RecursionDesired = false
	c := &dns.Client{Timeout: time.Second}
	in, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range append(in.Answer, in.Ns...) {
		if ns, ok := rr.(*dns.NS); ok && dns.CanonicalName(ns.Hdr.Name) == owner {
			out = append(out, dns.CanonicalName(ns.Ns))
		}
	}
	return out, nil
}
