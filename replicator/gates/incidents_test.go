package gates

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regdr/regdr/replicator/zone"
)

// expect is one finding kind an incident must produce, at one gate.
type expect struct {
	gate, kind string
	names      []string // exact set of names of that kind (nil: not checked)
	total      int      // number of findings of that kind (0: at least one)
	msg        string   // substring of some finding's message
}

// incident reproduces one INCIDENTS.md failure from testdata/incidents.
type incident struct {
	name        string
	file        string
	origin      string
	prev, pub   string // fixture names; "" for none
	expected    *int
	removed     map[string]bool
	fail        []string // the exact set of failing gates
	want        []expect
	totalSigned bool // expect.total of the first want is the zone's RRSIG count
}

var incidents = []incident{
	{
		name: "the good TLD against itself passes", file: "good.zone", prev: "good.zone", pub: "good.zone",
		expected: ptr(nDelegations), fail: nil,
	},
	{
		name: ".se 2009: every name doubled (kumo.test.test.)", file: "doubled-all.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateOrigin, GateBudget},
		want: []expect{
			{gate: GateOrigin, kind: "doubled-origin", total: nDelegations + nDelegations/4, msg: "missing trailing dot?"},
			{gate: GateBudget, kind: "removed", total: nDelegations},
			{gate: GateBudget, kind: "added", total: nDelegations},
		},
	},
	{
		name: ".se 2009: three names doubled, under every budget", file: "doubled-3.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateOrigin},
		want: []expect{{gate: GateOrigin, kind: "doubled-origin",
			names: []string{"kawa.test.test.", "ns1.kawa.test.test.", "sora.test.test.", "yama.test.test."}}},
	},
	{
		name: ".hk 2004 / RIPE 2012: 43% of delegations missing", file: "truncated.zone", prev: "good.zone", pub: "good.zone",
		expected: ptr(nDelegations),
		fail:     []string{GateBudget, GateReconcile},
		want: []expect{
			{gate: GateBudget, kind: "removed", total: nDelegations - 91, msg: "removed since the published version"},
			{gate: GateReconcile, kind: "count-mismatch", msg: "zone has 91 delegations, the registry database expects 160"},
		},
	},
	{
		name: "RIPE 2012: cold start from an empty zone", file: "empty.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateApex, GateBudget, GateRequired},
		want: []expect{
			{gate: GateApex, kind: "no-apex-ns", names: []string{"test."}},
			{gate: GateBudget, kind: "empty-zone", names: []string{"test."}, msg: "refused whatever the thresholds"},
			{gate: GateRequired, kind: "required-missing", names: []string{"nic.test."}},
		},
	},
	{
		name: "RIPE 2012/2017: a valid apex-only zone", file: "apex-only.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateBudget},
		want: []expect{{gate: GateBudget, kind: "apex-only", names: []string{"test."}}},
	},
	{
		name: "RIPE 2012: serial regression", file: "serial-regression.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateSerial},
		want: []expect{{gate: GateSerial, kind: "serial-regression", msg: "2026011499 is not after the previous version's 2026011500"}},
	},
	{
		name: "RIPE 2012: same serial, different content", file: "same-serial.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateSerial},
		want: []expect{{gate: GateSerial, kind: "same-serial", msg: "same serial, different content"}},
	},
	{
		name: "missing glue for in-domain name servers", file: "missing-glue.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateApex},
		want: []expect{{gate: GateApex, kind: "missing-glue", names: []string{"d044.test.", "kumo.test."}, msg: "ns1.kumo.test."}},
	},
	{
		name: "RIPE 2012: DS records vanish silently", file: "ds-lost.zone", prev: "good.zone", pub: "good.zone",
		fail: []string{GateRequired},
		want: []expect{{gate: GateRequired, kind: "ds-lost", names: []string{"d021.test.", "kumo.test."}}},
	},
	{
		name: "RIPE 2012: 31 RFC 2317 CNAMEs lost", file: "rev-lost-cnames.zone", origin: "0.192.in-addr.arpa.",
		prev: "rev-good.zone", pub: "rev-good.zone", expected: ptr(61),
		fail: []string{GateRequired},
		want: []expect{{gate: GateRequired, kind: "rfc2317-cname-lost", total: 31, names: lostCNAMEs()}},
	},
	{
		name: "the same CNAMEs removed on purpose by the registry", file: "rev-lost-cnames.zone", origin: "0.192.in-addr.arpa.",
		prev: "rev-good.zone", pub: "rev-good.zone", removed: removedSet(lostCNAMEs()),
		fail: nil,
	},
	{
		name: "a good signed zone (NSEC)", file: "signed-good.zone", fail: nil,
	},
	{
		name: "a good signed zone (NSEC3)", file: "signed-good-nsec3.zone", fail: nil,
	},
	{
		name: ".se 2009: expired signatures", file: "expired.zone", prev: "signed-good.zone", pub: "signed-good.zone",
		fail: []string{GateDNSSEC}, totalSigned: true,
		want: []expect{{gate: GateDNSSEC, kind: "expired", msg: "RRSIG expired 2026-01-14T00:00:00Z"}},
	},
	{
		name: "signatures expiring inside the minimum", file: "expiring.zone", prev: "signed-good.zone", pub: "signed-good.zone",
		fail: []string{GateDNSSEC}, totalSigned: true,
		want: []expect{{gate: GateDNSSEC, kind: "expiring", msg: "expires in 40h, minimum 72h"}},
	},
	{
		name: ".se 2009: one corrupted signature", file: "corrupt-sig.zone", prev: "signed-good.zone", pub: "signed-good.zone",
		fail: []string{GateDNSSEC},
		want: []expect{{gate: GateDNSSEC, kind: "bad-signature", names: []string{"kumo.test."}, total: 1}},
	},
	{
		name: "broken NSEC chain", file: "broken-nsec.zone", prev: "signed-good.zone", pub: "signed-good.zone",
		fail: []string{GateDNSSEC},
		want: []expect{{gate: GateDNSSEC, kind: "nsec-missing", names: []string{"sora.test."}, total: 1}},
	},
	{
		name: "broken NSEC3 chain", file: "broken-nsec3.zone", prev: "signed-good-nsec3.zone", pub: "signed-good-nsec3.zone",
		fail: []string{GateDNSSEC},
		want: []expect{
			{gate: GateDNSSEC, kind: "nsec3-missing", names: []string{"yama.test."}, total: 1},
			{gate: GateDNSSEC, kind: "nsec3-next", total: 1},
		},
	},
}

func lostCNAMEs() []string {
	var out []string
	for a := 1; a <= 31; a++ {
		out = append(out, fmt.Sprintf("%d.2.0.192.in-addr.arpa.", a))
	}
	return out
}

func removedSet(names []string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// TestIncidents runs every incident on the committed corpus.
func TestIncidents(t *testing.T) {
	runIncidents(t, func(t testing.TB, name, origin string) *zone.Zone {
		return load(t, filepath.Join("incidents", name), origin)
	})
}

// runIncidents checks each incident: exactly the expected gates fail, with
// the expected findings naming the expected names, located in the file.
func runIncidents(t *testing.T, get func(t testing.TB, name, origin string) *zone.Zone) {
	cfg := DefaultConfig()
	cfg.RequiredNames = []string{"nic.test."}
	for _, tt := range incidents {
		t.Run(tt.name, func(t *testing.T) {
			origin := tt.origin
			if origin == "" {
				origin = "test."
			}
			c := cfg
			if origin != "test." {
				c.RequiredNames = []string{"*.2.0.192.in-addr.arpa."}
			}
			in := &Input{Zone: get(t, tt.file, origin), Now: fixedNow, ExpectedDelegations: tt.expected, RemovedByRegistry: tt.removed}
			if tt.prev != "" {
				in.Previous = get(t, tt.prev, origin)
			}
			switch {
			case tt.pub == tt.prev:
				in.Published = in.Previous
			case tt.pub != "":
				in.Published = get(t, tt.pub, origin)
			}
			rep := Run(context.Background(), Default(c), in)
			if got := rep.Failed(); !slices.Equal(got, tt.fail) {
				t.Errorf("failing gates = %v, want %v", got, tt.fail)
				for _, r := range rep.Results {
					if r.Status == StatusFail {
						t.Logf("  %s: %s; %v", r.Gate, r.Reason, r.Findings[:min(3, len(r.Findings))])
					}
				}
			}
			if rep.Pass != (len(tt.fail) == 0) {
				t.Errorf("Pass = %v with failing gates %v", rep.Pass, rep.Failed())
			}
			for _, r := range rep.Results {
				if r.Status == StatusFail && r.Reason == "" {
					t.Errorf("%s fails without a reason", r.Gate)
				}
				if r.Status == StatusPass && r.Total != 0 {
					t.Errorf("%s passes with %d findings", r.Gate, r.Total)
				}
			}
			for i, w := range tt.want {
				res, _ := rep.Result(w.gate)
				total := w.total
				if i == 0 && tt.totalSigned {
					total = in.Zone.Counts["RRSIG"]
				}
				checkExpect(t, res, w, total, in.Zone.File)
			}
		})
	}
}

func checkExpect(t *testing.T, r Result, w expect, total int, file string) {
	t.Helper()
	var got []Finding
	n := 0
	for _, f := range r.Findings {
		if f.Kind == w.kind {
			got = append(got, f)
		}
	}
	// Count beyond the listed ones through the per-kind summary.
	n = len(got)
	if r.Total > len(r.Findings) {
		n = -1 // capped: only the listed part is known here
	}
	if len(got) == 0 {
		t.Errorf("%s: no %s finding; findings: %v", w.gate, w.kind, r.Findings)
		return
	}
	if total > 0 && n >= 0 && n != total {
		t.Errorf("%s: %d %s findings, want %d", w.gate, n, w.kind, total)
	}
	if total > 0 && n < 0 && !strings.Contains(r.Reason, fmt.Sprintf("%d %s", total, w.kind)) && !strings.Contains(r.Reason, fmt.Sprintf("%d of", total)) {
		t.Errorf("%s: reason %q does not count %d %s", w.gate, r.Reason, total, w.kind)
	}
	if w.names != nil {
		var ns []string
		for _, f := range got {
			if !slices.Contains(ns, f.Name) {
				ns = append(ns, f.Name)
			}
		}
		slices.Sort(ns)
		if !slices.Equal(ns, sorted(w.names)) {
			t.Errorf("%s %s names = %v, want %v", w.gate, w.kind, ns, sorted(w.names))
		}
	}
	if w.msg != "" && !slices.ContainsFunc(got, func(f Finding) bool { return strings.Contains(f.Msg, w.msg) }) {
		t.Errorf("%s %s: no message containing %q: %v", w.gate, w.kind, w.msg, got[0].Msg)
	}
	for _, f := range got {
		if f.Gate != w.gate {
			t.Errorf("finding %v has gate %q", f, f.Gate)
		}
		if file != "" && (f.File == "" || f.Line <= 0) {
			t.Errorf("finding without file:line: %v", f)
		}
	}
}
