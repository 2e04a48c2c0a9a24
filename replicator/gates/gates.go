package gates

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
)

// Gate names, as they appear in Result.Gate and Finding.Gate.
const (
	GateOrigin    = "origin"
	GateApex      = "apex"
	GateSerial    = "serial"
	GateBudget    = "budget"
	GateReconcile = "reconcile"
	GateRequired  = "required"
	GateDNSSEC    = "dnssec"
	GateZONEMD    = "zonemd"
)

// Result statuses. A skip is a gate that could not decide (nothing to
// compare with, nothing to check); it does not fail the report but is
// never shown as a pass either.
const (
	StatusPass = "pass"
	StatusFail = "fail"
	StatusSkip = "skip"
)

// Config holds the gate thresholds. Start from DefaultConfig: its values
// would have stopped every incident in INCIDENTS.md.
type Config struct {
	// MaxRemovedPercent, MaxAddedPercent and MaxChangedPercent bound how
	// many delegations one version may remove, add, or change (NS set or
	// DS set differs), as a percentage of the delegations in the version
	// compared against. A count above its limit fails the budget gate.
	MaxRemovedPercent, MaxAddedPercent, MaxChangedPercent float64
	// MinChangeBase is the least number of delegations a percentage is
	// taken of: the limit is pct/100 * max(previous delegations,
	// MinChangeBase). Without it, removing one delegation of three is 33%
	// and a small zone could never change.
	MinChangeBase int
	// MinSignatureValidity is the least time every RRSIG must still be
	// valid after Input.Now.
	MinSignatureValidity time.Duration
	// ReconcileTolerance is how many delegations the zone may differ from
	// the registry database's count by.
	ReconcileTolerance int
	// RequiredNames must be present in every version: absolute names
	// ("nic.test.") or suffix patterns ("*.in-addr.arpa.": at least one
	// owner name strictly below in-addr.arpa.).
	RequiredNames []string
	// MaxFindingsPerGate caps the findings listed per gate (the first
	// finding of each kind is listed regardless); Result.Total keeps the
	// full count. 0 means DefaultMaxFindings.
	MaxFindingsPerGate int
}

// DefaultMaxFindings is the findings cap when Config leaves it 0.
const DefaultMaxFindings = 100

// DefaultConfig returns thresholds under which every incident in
// INCIDENTS.md is refused.
func DefaultConfig() Config {
	return Config{
		// 2% removed: RIPE 2012 lost 43% and 54% of delegations, .se
		// 2009 "removed" 100%. A registry's daily churn in deletions is
		// well under 1%; 2% leaves room for a purge of expired names
		// while refusing anything that looks like a broken generator.
		MaxRemovedPercent: 2,
		// 10% added: additions hurt less than removals (nothing stops
		// resolving), but a doubled origin also shows up as 100% added.
		MaxAddedPercent: 10,
		// 5% changed: an NS or DS change on many delegations at once is
		// a hosting provider migration at best and a corrupted join at
		// worst; both deserve a second pair of eyes.
		MaxChangedPercent: 5,
		// 100: percentages of fewer than 100 delegations are taken of
		// 100, so a 3-delegation test zone can lose one and a 100-name
		// zone two, and no more.
		MinChangeBase: 100,
		// 72h: a zone published with less left has one weekend before
		// it goes bogus everywhere; the signer must have re-signed well
		// before that (.se 2009: nobody could reach the signer).
		MinSignatureValidity: 72 * time.Hour,
		// 0: the zone is generated from the database, so any difference
		// is a bug or a half-written zone (.hk 2004).
		ReconcileTolerance: 0,
		MaxFindingsPerGate: DefaultMaxFindings,
	}
}

// Validate reports thresholds that cannot be meant.
func (c Config) Validate() error {
	var errs []error
	for _, p := range []struct {
		name string
		v    float64
	}{{"max removed percent", c.MaxRemovedPercent}, {"max added percent", c.MaxAddedPercent}, {"max changed percent", c.MaxChangedPercent}} {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 100 {
			errs = append(errs, fmt.Errorf("gates: %s %v is not a percentage from 0 to 100", p.name, p.v))
		}
	}
	if c.MinChangeBase < 0 {
		errs = append(errs, fmt.Errorf("gates: min change base %d is negative", c.MinChangeBase))
	}
	if c.MinSignatureValidity < 0 {
		errs = append(errs, fmt.Errorf("gates: min signature validity %s is negative", c.MinSignatureValidity))
	}
	if c.ReconcileTolerance < 0 {
		errs = append(errs, fmt.Errorf("gates: reconcile tolerance %d is negative", c.ReconcileTolerance))
	}
	if c.MaxFindingsPerGate < 0 {
		errs = append(errs, fmt.Errorf("gates: max findings per gate %d is negative", c.MaxFindingsPerGate))
	}
	for _, n := range c.RequiredNames {
		if _, err := parseRequired(n); err != nil {
			errs = append(errs, fmt.Errorf("gates: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (c Config) maxFindings() int {
	if c.MaxFindingsPerGate <= 0 {
		return DefaultMaxFindings
	}
	return c.MaxFindingsPerGate
}

// Input is one version to check and what it is checked against.
type Input struct {
	// Zone is the candidate version.
	Zone *zone.Zone
	// Previous is the last accepted version (stored, maybe not yet
	// published); nil for the first version of a zone.
	Previous *zone.Zone
	// PreviousVerified says Previous passed the dnssec gate (its stored
	// report says so; a version published by a two-person override
	// after a dnssec failure has not). The dnssec gate then checks
	// incrementally: a signature identical to one of Previous, over
	// identical records, under an identical DNSKEY RRset, verified then
	// and verifies now (the cryptography does not depend on the time),
	// so only new and changed signatures are verified again. Everything
	// else (validity windows of every signature, coverage, algorithms,
	// the whole NSEC/NSEC3 chain) is checked in full, so the verdict is
	// the same as without it. Never set it for a Previous that was not
	// checked: that would accept its bad signatures unverified.
	PreviousVerified bool
	// PreviousPassed says Previous passed every gate of this check,
	// under the same configuration, without a single finding (its stored
	// report says so, and no override published it). The gates then
	// check incrementally: per-name checks look only at the names whose
	// records or position (apex, delegation, occluded) differ from
	// Previous, and at the names those affect (delegations whose glue
	// changed, NSEC chain neighbours); checks over the whole zone
	// (signature validity windows, counts, required names, ZONEMD) run
	// in full. Whenever the incremental check finds anything, the gate
	// runs again in full, so a refused version gets the same report as
	// without it. Implies PreviousVerified.
	PreviousPassed bool
	// PreviousIndex is Previous already indexed (the Index a previous
	// Run returned for it), saving the index of a large zone; nil to
	// index Previous here.
	PreviousIndex *Index
	// Published is the version secondaries serve now; nil if none.
	Published *zone.Zone
	// Now is the instant signatures are validated at: the wall clock for
	// a new version, the publication time when re-checking an archived
	// one (regdr zone check --at).
	Now time.Time
	// ExpectedDelegations is the registry database's count of
	// delegations (the .hk 2004 reconciliation); nil skips the
	// reconcile gate, which then reports "skip", never "pass".
	ExpectedDelegations *int
	// RemovedByRegistry holds names (lower case, absolute) the registry
	// removed on purpose since Previous: their RFC 2317 CNAMEs and DS
	// records may go. nil means unknown, so every loss is reported.
	RemovedByRegistry map[string]bool
}

// Finding is one thing a gate refused, as precisely as it can be named.
type Finding struct {
	Gate string `json:"gate"`
	// Kind is a short stable identifier of the problem ("doubled-origin",
	// "missing-glue", "ds-lost"), for programs and tests; Msg is for
	// people.
	Kind string `json:"kind"`
	// Name is the owner name concerned (lower case), Type the RR type
	// mnemonic when one record type is concerned.
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
	// File and Line locate the record when the zone was parsed from a
	// file (Line 0 otherwise). For something missing from the candidate
	// they point at the record in the version it was compared with.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Msg  string `json:"msg"`
}

func (f Finding) String() string {
	var b strings.Builder
	if f.File != "" && f.Line > 0 {
		fmt.Fprintf(&b, "%s:%d: ", f.File, f.Line)
	}
	b.WriteString(f.Name)
	if f.Type != "" {
		b.WriteString("/")
		b.WriteString(f.Type)
	}
	b.WriteString(": ")
	b.WriteString(f.Msg)
	return b.String()
}

// Result is one gate's verdict.
type Result struct {
	Gate   string `json:"gate"`
	Status string `json:"status"` // StatusPass, StatusFail or StatusSkip
	// Reason summarises the verdict ("5 of 160 delegations removed
	// (3.1%, limit 2%)", "unsigned zone"); always set for fail and skip.
	Reason string `json:"reason,omitempty"`
	// Findings lists at most Config.MaxFindingsPerGate findings (and the
	// first of each kind), in file order; Total counts all of them.
	Findings []Finding     `json:"findings,omitempty"`
	Total    int           `json:"total"`
	Took     time.Duration `json:"took_ns"`
}

// Report is the verdict on one version.
type Report struct {
	Origin string `json:"origin"`
	Serial uint32 `json:"serial"`
	Digest string `json:"digest"`
	// At is Input.Now: the instant signatures were validated at.
	At      time.Time `json:"at"`
	Pass    bool      `json:"pass"`
	Results []Result  `json:"results"`
}

// Failed returns the names of the gates that failed, in run order.
func (r Report) Failed() []string {
	var out []string
	for _, res := range r.Results {
		if res.Status == StatusFail {
			out = append(out, res.Gate)
		}
	}
	return out
}

// Passed reports whether the named gate ran and passed (a skip is not a
// pass). A caller deciding Input.PreviousVerified from a stored version's
// report asks Passed(GateDNSSEC): a version published by an override
// after a dnssec failure keeps its failing result and is not verified.
func (r *Report) Passed(gate string) bool {
	if r == nil {
		return false
	}
	res, ok := r.Result(gate)
	return ok && res.Status == StatusPass
}

// Result returns the result of the named gate.
func (r Report) Result(gate string) (Result, bool) {
	for _, res := range r.Results {
		if res.Gate == gate {
			return res, true
		}
	}
	return Result{}, false
}

// Gate is one check. Check must not modify the Index or the Input (gates
// share them) and must honour ctx only to stop early: a cancelled check
// returns a failing result, never a pass.
type Gate interface {
	Name() string
	Check(ctx context.Context, ix *Index, in *Input) Result
}

// Default returns every gate, in the order they run: cheap structural
// checks first, so a report on a broken zone leads with the cause (a
// doubled origin) rather than its consequences (thousands of signatures).
func Default(c Config) []Gate {
	return []Gate{
		originGate{c},
		apexGate{c},
		serialGate{c},
		budgetGate{c},
		reconcileGate{c},
		requiredGate{c},
		dnssecGate{c},
		zonemdGate{c},
	}
}

// Run indexes in.Zone (and the versions it is compared with) once and runs
// every gate on it. The report passes only if no gate failed.
func Run(ctx context.Context, gates []Gate, in *Input) Report {
	rep, _ := RunIndexed(ctx, gates, in)
	return rep
}

// RunIndexed is Run that also returns the candidate's index, for the next
// check to pass as Input.PreviousIndex (nil when the input was refused
// before indexing).
func RunIndexed(ctx context.Context, gates []Gate, in *Input) (Report, *Index) {
	if in == nil || in.Zone == nil {
		return Report{Results: []Result{{Gate: "input", Status: StatusFail, Reason: "no candidate zone to check"}}}, nil
	}
	rep := Report{Origin: in.Zone.Origin, Serial: in.Zone.Serial, Digest: in.Zone.Digest, At: in.Now, Pass: true}
	for _, o := range []*zone.Zone{in.Previous, in.Published} {
		if o != nil && o.Origin != in.Zone.Origin {
			// Comparing two different zones would report every
			// name as removed and added: refuse the comparison.
			rep.Pass = false
			rep.Results = append(rep.Results, Result{Gate: "input", Status: StatusFail,
				Reason: fmt.Sprintf("candidate is zone %s, the version it is compared with is zone %s", in.Zone.Origin, o.Origin)})
			return rep, nil
		}
	}
	ix := indexAll(in)
	for _, g := range gates {
		start := time.Now()
		var res Result
		if err := ctx.Err(); err != nil {
			res = Result{Gate: g.Name(), Status: StatusFail, Reason: fmt.Sprintf("not run: %v", err)}
		} else {
			res = check(ctx, g, ix, in)
		}
		res.Gate = g.Name()
		res.Took = time.Since(start)
		if res.Status == StatusFail && res.Reason == "" {
			res.Reason = fmt.Sprintf("%d finding(s)", res.Total)
		}
		if res.Status == StatusFail {
			rep.Pass = false
		}
		rep.Results = append(rep.Results, res)
	}
	ix.previous, ix.published, ix.diff = nil, nil, nil // not kept alive by the caller's copy
	return rep, ix
}

// check runs one gate, failing closed: a gate that panics on some odd
// zone blocks that zone instead of taking the agent down with it.
func check(ctx context.Context, g Gate, ix *Index, in *Input) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{Status: StatusFail, Reason: fmt.Sprintf("gate %s failed internally: %v", g.Name(), p)}
		}
	}()
	return g.Check(ctx, ix, in)
}

// indexAll indexes the candidate and the versions it is compared with, in
// parallel: on a large zone each index is a pass over every record.
func indexAll(in *Input) *Index {
	var prev, pub *Index
	var wg sync.WaitGroup
	if in.PreviousIndex != nil && in.PreviousIndex.Zone() == in.Previous {
		prev = in.PreviousIndex
	} else if in.Previous != nil {
		wg.Add(1)
		go func() { defer wg.Done(); prev = NewIndex(in.Previous) }()
	}
	if in.Published != nil && in.Published != in.Previous {
		wg.Add(1)
		go func() { defer wg.Done(); pub = NewIndex(in.Published) }()
	}
	ix := NewIndex(in.Zone)
	wg.Wait()
	if in.Published != nil && in.Published == in.Previous {
		pub = prev
	}
	ix.previous, ix.published = prev, pub
	if in.PreviousPassed && prev != nil {
		ix.diff = diffIndex(prev, ix)
	}
	return ix
}

// collector gathers one gate's findings under the cap.
type collector struct {
	gate  string
	max   int
	ix    *Index
	list  []Finding
	total int
	kinds map[string]int
	order []string // kinds in order of first finding
}

func newCollector(gate string, c Config, ix *Index) *collector {
	return &collector{gate: gate, max: c.maxFindings(), ix: ix}
}

func (c *collector) add(f Finding) {
	c.total++
	if c.kinds == nil {
		c.kinds = map[string]int{}
	}
	first := c.kinds[f.Kind] == 0
	if first {
		c.order = append(c.order, f.Kind)
	}
	c.kinds[f.Kind]++
	// The first finding of each kind is listed even past the cap, so a
	// flood of one problem cannot hide that there is another.
	if len(c.list) < c.max || first {
		f.Gate = c.gate
		c.list = append(c.list, f)
	}
}

// at adds a finding located at record i of index x (nil x: c.ix).
func (c *collector) at(x *Index, i int32, kind, name, typ, format string, args ...any) {
	if x == nil {
		x = c.ix
	}
	if len(c.list) >= c.max && c.kinds[kind] > 0 {
		// Only counted: skip formatting a message nobody will see
		// (an expired zone has one finding per signature).
		c.total++
		c.kinds[kind]++
		return
	}
	f := Finding{Kind: kind, Name: name, Type: typ, Msg: fmt.Sprintf(format, args...)}
	f.File, f.Line = x.Loc(i)
	c.add(f)
}

// result turns the findings into a result: fail when there are any. The
// listed findings are put in file order, which is how an operator reads
// them next to the zone file.
func (c *collector) result(passReason string) Result {
	slices.SortStableFunc(c.list, func(a, b Finding) int {
		if a.File != b.File {
			return strings.Compare(a.File, b.File)
		}
		return a.Line - b.Line
	})
	r := Result{Gate: c.gate, Findings: c.list, Total: c.total, Status: StatusPass, Reason: passReason}
	if c.total > 0 {
		r.Status = StatusFail
		r.Reason = ""
	}
	return r
}

// summary counts the findings by kind: "3 missing-glue, 1 occluded".
func (c *collector) summary() string {
	parts := make([]string, 0, len(c.order))
	for _, k := range c.order {
		parts = append(parts, fmt.Sprintf("%d %s", c.kinds[k], k))
	}
	s := strings.Join(parts, ", ")
	if c.total > len(c.list) {
		s += fmt.Sprintf(" (first %d of %d listed)", len(c.list), c.total)
	}
	return s
}

func skip(gate, reason string) Result {
	return Result{Gate: gate, Status: StatusSkip, Reason: reason}
}

func cancelled(gate string, err error) Result {
	return Result{Gate: gate, Status: StatusFail, Reason: fmt.Sprintf("interrupted: %v", err)}
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
