package gates

// The reconcile gate is the fix .hk adopted after 1 November 2004
// (INCIDENTS.md §1): a watchdog killed the zone build half way, the
// incomplete zone was loaded and propagated, and .com.hk names vanished for
// seven hours. Afterwards the number of records the database says there
// should be was compared with the number actually generated, and a zone
// that did not match was not applied. Here the count is delegations, the
// one number both the registry database and the zone can state. Without
// an expectation from the database the gate skips, and says so: "no
// reconciliation" must never read as "reconciled".

import (
	"context"
	"fmt"
)

type reconcileGate struct{ c Config }

func (reconcileGate) Name() string { return GateReconcile }

func (g reconcileGate) Check(ctx context.Context, ix *Index, in *Input) Result {
	if in.ExpectedDelegations == nil {
		return skip(GateReconcile, "no expected delegation count from the registry database (reconciliation not configured)")
	}
	want, got := *in.ExpectedDelegations, len(ix.Delegations())
	diff := got - want
	col := newCollector(GateReconcile, g.c, ix)
	if diff > g.c.ReconcileTolerance || -diff > g.c.ReconcileTolerance {
		col.at(nil, 0, "count-mismatch", ix.Origin(), "NS",
			"zone has %d delegations, the registry database expects %d (difference %+d, tolerance %d)",
			got, want, diff, g.c.ReconcileTolerance)
	}
	res := col.result(fmt.Sprintf("%d delegations, as the registry database expects", got))
	if res.Status == StatusFail {
		res.Reason = col.list[0].Msg
	}
	return res
}
