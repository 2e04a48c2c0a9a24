package agent

import (
	"context"
	"strings"
	"time"

	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zoneverify"
)

// verifySecondaries waits until every public secondary serves the new
// serial, then compares sampled delegations with the published version. An
// "OK" from NOTIFY only means the secondary was told; this checks what it
// answers.
func (a *Agent) verifySecondaries(ctx context.Context, z *zone.Zone) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	dels := zoneverify.Delegations(z)
	owners := zoneverify.Sample(dels, zoneverify.SampleSize)
	superseded := func() bool { cur := a.dns.Zone(z.Origin); return cur != nil && cur.Serial != z.Serial }
	for _, sec := range a.cfg.Secondary {
		c := status.SecondaryCheck{Name: sec.Name, Addr: sec.Addr, Zone: z.Origin, Published: z.Serial}
		got, err := zoneverify.WaitSerial(ctx, sec.Addr, z.Origin, z.Serial, superseded)
		c.Serial = got
		if err != nil {
			if superseded() {
				return // the newer version's check takes over
			}
			c.Error = err.Error()
		}
		if err == nil && c.Serial == z.Serial {
			c.Sampled = len(owners)
			c.Mismatches = zoneverify.CheckSample(ctx, sec.Addr, dels, owners)
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
