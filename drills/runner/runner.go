// Package runner runs a drill scenario: it checks the steady state, starts
// the probes, applies the steps in order while watching the abort
// conditions, always runs the rollback, verifies the steady state came
// back, measures RTO, RPO, DNS availability, serial continuity and DNSSEC
// validity, and checks the scenario's expectations. The world is reached
// only through the interfaces in env.go; LabEnv implements them on a lab.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/regdr/regdr/drills/probe"
	"github.com/regdr/regdr/drills/report"
	"github.com/regdr/regdr/drills/scenario"
)

// ErrProduction is returned when a production scenario is run without the
// explicit production flag, or a lab is not the target.
var ErrProduction = errors.New("production drill refused")

// Options configure a run.
type Options struct {
	Faults    Faults
	Observer  Observer
	Commander Commander
	Loader    Loader
	// Confirm asks an operator; nil confirms automatically (a scheduled
	// or CI drill), which the report records.
	Confirm func(ctx context.Context, prompt string) (bool, error)
	// Target names where the drill runs ("lab" or the deployment).
	Target string
	// Production is the --production flag; the caller has checked the
	// two-person approval before setting it.
	Production bool
	// ObserveEvery is the background observation interval (default
	// 500 ms): facts, alarms and the RTO end are this precise.
	ObserveEvery time.Duration
	// StepTimeout bounds a step without its own (default 60 s).
	StepTimeout time.Duration
	Log         *slog.Logger
}

// Run runs s and returns its report. The error is only for a drill that
// was refused outright; everything that happens once it starts, failures
// included, is in the report.
func Run(ctx context.Context, s *scenario.Scenario, o Options) (*report.Report, error) {
	if s.Target.Production && !o.Production {
		return nil, fmt.Errorf("scenario %s targets production: run it with --production after a two-person approval: %w", s.Name, ErrProduction)
	}
	if o.ObserveEvery == 0 {
		o.ObserveEvery = 500 * time.Millisecond
	}
	if o.StepTimeout == 0 {
		o.StepTimeout = 60 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Target == "" {
		o.Target = "lab"
	}
	d := &drill{s: s, o: o, log: o.Log.With("drill", s.Name), vars: map[string]string{}}
	for k, v := range o.Commander.Vars() {
		d.vars[k] = v
	}
	return d.run(ctx), nil
}

type drill struct {
	s   *scenario.Scenario
	o   Options
	log *slog.Logger
	r   *report.Report

	vars     map[string]string
	samplers []*probe.Sampler

	mu         sync.Mutex
	baseline   Baseline
	rtoStart   time.Time
	rtoArmed   time.Time // when the from-step ended
	rtoEnd     time.Time
	gates      map[string]bool
	serials    map[uint32]bool
	freezes    map[string]bool
	alarms     map[string]bool
	abortWhy   string
	lastObs    Observation
	stepsStart time.Time
	stepsEnd   time.Time
}

func (d *drill) run(ctx context.Context) *report.Report {
	s := d.s
	d.r = &report.Report{Scenario: s.Name, Description: s.Description, Tags: s.Tags, File: s.File,
		Target: d.o.Target, Started: time.Now()}
	d.gates, d.serials, d.freezes, d.alarms = map[string]bool{}, map[uint32]bool{}, map[string]bool{}, map[string]bool{}
	d.baseline.Since = d.r.Started
	if m := s.Measure.RTO; m != nil {
		d.r.Metrics.RTOFrom, d.r.Metrics.RTOUntil = m.From, m.Until.String()
	}

	pctx, stopProbes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, ps := range s.Probes {
		fn, err := d.o.Observer.Probe(ps.Probe)
		if err != nil {
			d.r.Reasons = append(d.r.Reasons, fmt.Sprintf("probe %s: %v", ps.Probe, err))
			continue
		}
		sm := &probe.Sampler{Name: ps.Probe, Rate: ps.Rate, Fn: fn}
		d.samplers = append(d.samplers, sm)
		wg.Add(1)
		go func() { defer wg.Done(); sm.Run(pctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.observeLoop(pctx) }()

	steady := d.preconditions(ctx, report.PhasePrecondition)
	var stepsFailed bool
	if steady {
		stepsFailed = d.steps(ctx)
		d.rollback(ctx)
		if !d.preconditions(ctx, report.PhaseVerify) {
			d.r.Reasons = append(d.r.Reasons, "the steady state did not come back after the rollback")
			stepsFailed = true
		}
	}
	var loadRes *LoadResult
	if d.o.Loader != nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		var err error
		loadRes, err = d.o.Loader.FinishLoad(lctx)
		cancel()
		if err != nil {
			d.r.Reasons = append(d.r.Reasons, fmt.Sprintf("RPO: %v", err))
		}
	}
	// A last look for the end state, taken before the probes stop so the
	// report's timeline covers it.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	final := d.o.Observer.Observe(octx)
	cancel()
	d.note(final)
	stopProbes()
	wg.Wait()
	d.r.Finished = time.Now()

	d.measure(loadRes, final)
	if steady {
		// Without the steady state no fault ran: there is nothing the
		// expectations could be about.
		d.expect(final, loadRes)
	}
	d.outcome(steady, stepsFailed)
	return d.r
}

// observeLoop keeps facts (blocked gates, freezes, alarms) and ends the
// RTO window, independent of what the steps wait for.
func (d *drill) observeLoop(ctx context.Context) {
	t := time.NewTicker(d.o.ObserveEvery)
	defer t.Stop()
	for {
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		obs := d.o.Observer.Observe(octx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		d.note(obs)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// note records what an observation shows.
func (d *drill) note(obs Observation) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastObs = obs
	for _, b := range blockedSince(obs, d.r.Started) {
		for _, g := range b.Gates {
			d.gates[g] = true
		}
		d.serials[b.Serial] = true
	}
	for _, f := range obs.Freezes {
		d.freezes[f.Reason] = true
	}
	for _, a := range Alarms(obs) {
		d.alarms[a] = true
	}
	// Only a look that began after the from-step finished counts: one
	// begun while the fault was still being applied may see the service
	// as it was before.
	if m := d.s.Measure.RTO; m != nil && !d.rtoArmed.IsZero() && d.rtoEnd.IsZero() && !obs.At.Before(d.rtoArmed) {
		if Eval(m.Until, obs, d.baseline) == nil {
			d.rtoEnd = obs.At
		}
	}
}

func (d *drill) addStep(st report.Step) {
	d.mu.Lock()
	d.r.Steps = append(d.r.Steps, st)
	d.mu.Unlock()
}

// preconditions waits for each steady-state condition in turn.
func (d *drill) preconditions(ctx context.Context, phase string) bool {
	ok := true
	for _, p := range d.s.Preconditions {
		st := report.Step{Phase: phase, Name: p.Cond.String(), Kind: "condition", Start: time.Now()}
		err := d.waitFor(ctx, p.Cond, p.Within)
		st.End, st.OK = time.Now(), err == nil
		if err != nil {
			st.Error = err.Error()
			ok = false
			if phase == report.PhasePrecondition {
				d.r.Reasons = append(d.r.Reasons, fmt.Sprintf("steady state not reached: %s: %v", p.Cond, err))
			}
		}
		d.addStep(st)
		if !ok && phase == report.PhasePrecondition {
			return false
		}
	}
	return ok
}

// waitFor polls a condition with fresh observations until it holds.
func (d *drill) waitFor(ctx context.Context, c scenario.Cond, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
		obs := d.o.Observer.Observe(octx)
		ocancel()
		d.mu.Lock()
		b := d.baseline
		d.mu.Unlock()
		if last = Eval(c, obs, b); last == nil {
			d.note(obs)
			return nil
		}
		select {
		case <-ctx.Done():
			if ce := context.Cause(ctx); ce != nil && !errors.Is(ce, context.DeadlineExceeded) && !errors.Is(ce, context.Canceled) {
				return ce
			}
			return fmt.Errorf("%s did not hold within %s: %w", c, within, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// steps runs the scenario's steps; it reports whether one failed. An abort
// condition cancels the step in flight.
func (d *drill) steps(ctx context.Context) (failed bool) {
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	obs := d.o.Observer.Observe(octx)
	cancel()
	d.mu.Lock()
	d.baseline = Baseline{Since: time.Now(), Serial: obs.SecondarySerial}
	d.stepsStart = d.baseline.Since
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.stepsEnd = time.Now()
		d.mu.Unlock()
	}()

	sctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go d.watchAbort(stopWatch, abort)

	for _, step := range d.s.Steps {
		if err := context.Cause(sctx); err != nil && sctx.Err() != nil {
			break
		}
		st := d.runStep(sctx, step, report.PhaseStep)
		if !st.OK {
			if reason := d.aborted(); reason != "" {
				st.Error = "aborted: " + reason
			}
			d.addStep(st)
			if d.aborted() == "" {
				d.r.Reasons = append(d.r.Reasons, fmt.Sprintf("step %q failed: %s", step.Name, st.Error))
			}
			return true
		}
		d.addStep(st)
	}
	return false
}

func (d *drill) aborted() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.abortWhy
}

// watchAbort halts the steps when a probe has failed for longer than its
// abort condition allows.
func (d *drill) watchAbort(stop <-chan struct{}, abort context.CancelCauseFunc) {
	if len(d.s.Abort) == 0 {
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, a := range d.s.Abort {
			for _, sm := range d.samplers {
				if sm.Name != a.Probe {
					continue
				}
				since := sm.FailingSince()
				if !since.IsZero() && time.Since(since) > a.FailingFor {
					why := fmt.Sprintf("probe %s failing for more than %s (since %s)", a.Probe, a.FailingFor, since.Format("15:04:05.000"))
					d.mu.Lock()
					d.abortWhy = why
					d.r.AbortReason = why
					d.mu.Unlock()
					d.log.Warn("drill aborted", "reason", why)
					abort(errors.New(why))
					return
				}
			}
		}
	}
}

func (d *drill) rollback(ctx context.Context) {
	// An operator's Ctrl-C stops the steps, not the restore: each
	// rollback step is still bounded by its own timeout.
	ctx = context.WithoutCancel(ctx)
	for _, step := range d.s.Rollback {
		// Each rollback step runs whatever happened before it: a restore
		// that stops at its first error leaves more broken than needed.
		d.addStep(d.runStep(ctx, step, report.PhaseRollback))
	}
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func (d *drill) runStep(ctx context.Context, step scenario.Step, phase string) report.Step {
	st := report.Step{Phase: phase, Name: step.Name, Kind: step.Kind(), Start: time.Now()}
	if phase == report.PhaseStep && d.s.Measure.RTO != nil && d.s.Measure.RTO.From == step.Name {
		d.mu.Lock()
		d.rtoStart = st.Start
		d.mu.Unlock()
	}
	timeout := d.o.StepTimeout
	if step.Timeout != 0 {
		timeout = step.Timeout
	}
	if step.Wait != nil && step.Wait.Timeout != 0 {
		timeout = step.Wait.Timeout
	}
	if step.Wait != nil && step.Wait.Duration != 0 {
		timeout = step.Wait.Duration + time.Second
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch {
	case step.Action != "":
		d.log.Info("action", "step", step.Name, "action", step.Action, "args", step.Args)
		st.Detail, err = d.o.Faults.Do(sctx, step.Action, step.Args)
	case step.Wait != nil && step.Wait.For != nil:
		err = d.waitFor(sctx, *step.Wait.For, timeout)
		if err == nil {
			st.Detail = step.Wait.For.String() + " holds"
		}
	case step.Wait != nil:
		select {
		case <-sctx.Done():
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
		case <-time.After(step.Wait.Duration):
		}
		st.Detail = "held " + step.Wait.Duration.String()
	case step.Regdr != nil:
		st.Detail, err = d.regdr(sctx, step.Regdr)
	case step.Confirm != nil:
		if d.o.Confirm == nil {
			st.Detail = "confirmed automatically (non-interactive run): " + step.Confirm.Prompt
			break
		}
		var yes bool
		yes, err = d.o.Confirm(sctx, step.Confirm.Prompt)
		if err == nil && !yes {
			err = errors.New("the operator declined")
		}
		if yes {
			st.Detail = "confirmed by the operator"
		}
	}
	st.End = time.Now()
	st.OK = err == nil
	if phase == report.PhaseStep && d.s.Measure.RTO != nil && d.s.Measure.RTO.From == step.Name {
		d.mu.Lock()
		d.rtoArmed = st.End
		d.mu.Unlock()
	}
	if err != nil {
		st.Error = err.Error()
	}
	return st
}

func (d *drill) regdr(ctx context.Context, r *scenario.Regdr) (string, error) {
	args := make([]string, len(r.Args))
	for i, a := range r.Args {
		var missing []string
		args[i] = varRef.ReplaceAllStringFunc(a, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := d.vars[name]
			if !ok {
				missing = append(missing, name)
			}
			return v
		})
		if len(missing) > 0 {
			return "", fmt.Errorf("regdr %s: variable(s) %v not set (did the capturing step run?)", strings.Join(r.Args, " "), missing)
		}
	}
	stdout, stderr, code, err := d.o.Commander.Regdr(ctx, args)
	cmdline := "regdr " + strings.Join(args, " ")
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmdline, err)
	}
	detail := fmt.Sprintf("%s: exit %d", cmdline, code)
	if code != r.ExpectExit {
		return detail, fmt.Errorf("%s: exit %d, want %d: %s", cmdline, code, r.ExpectExit, lastLines(stderr+stdout, 3))
	}
	if r.ExpectOutput != "" && !strings.Contains(stdout+stderr, r.ExpectOutput) {
		return detail, fmt.Errorf("%s: output lacks %q: %s", cmdline, r.ExpectOutput, lastLines(stdout+stderr, 3))
	}
	if len(r.Capture) > 0 {
		var m map[string]any
		if err := json.Unmarshal([]byte(stdout), &m); err != nil {
			return detail, fmt.Errorf("%s: capture needs JSON output (add -o json): %w", cmdline, err)
		}
		for name, field := range r.Capture {
			v, ok := m[field]
			if !ok {
				return detail, fmt.Errorf("%s: output has no field %q to capture as %s", cmdline, field, name)
			}
			d.vars[name] = fmt.Sprint(v)
			detail += fmt.Sprintf("; %s=%v", name, v)
		}
	}
	return detail, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// measure fills the report's metrics and facts.
func (d *drill) measure(lr *LoadResult, final Observation) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := &d.r.Metrics
	m.SerialMonotonic = true
	for _, sm := range d.samplers {
		smp := sm.Samples()
		d.r.Probes = append(d.r.Probes, report.Probe{Name: sm.Name, Rate: sm.Rate, Samples: smp})
		p := d.r.Probes[len(d.r.Probes)-1]
		ratio := p.OKRatio()
		switch sm.Name {
		case "dns-serial":
			m.DNSAvailability, m.DNSQueries = &ratio, len(smp)
			var prev *probe.Sample
			for i := range smp {
				if !smp[i].OK {
					continue
				}
				if m.FirstSerial == 0 {
					m.FirstSerial = smp[i].Serial
				}
				m.LastSerial = smp[i].Serial
				if prev != nil && serialAfter(prev.Serial, smp[i].Serial) {
					m.SerialMonotonic = false
					m.SerialDecreases = append(m.SerialDecreases, fmt.Sprintf("%d → %d at +%s", prev.Serial, smp[i].Serial,
						smp[i].At.Sub(d.r.Started).Round(time.Millisecond)))
				}
				prev = &smp[i]
			}
		case "dnssec":
			m.DNSSECSecure = &ratio
		}
	}
	if !d.rtoStart.IsZero() && !d.rtoEnd.IsZero() {
		s := report.Seconds(d.rtoEnd.Sub(d.rtoStart))
		m.RTOSeconds, m.RTOStart, m.RTOEnd = &s, d.rtoStart, d.rtoEnd
	}
	if lr != nil {
		n := len(lr.Verdict.Lost)
		m.RPOWrites, m.Lost, m.Unexpected, m.Acked = &n, lr.Verdict.Lost, lr.Verdict.Unexpected, lr.Verdict.Acked
		var secs float64
		if n > 0 {
			lost := map[int64]bool{}
			for _, id := range lr.Verdict.Lost {
				lost[id] = true
			}
			var first, last time.Time
			for _, rec := range lr.Records {
				if lost[rec.ID] && rec.Acked() {
					if first.IsZero() || rec.At.Before(first) {
						first = rec.At
					}
					if rec.At.After(last) {
						last = rec.At
					}
				}
			}
			secs = report.Seconds(last.Sub(first))
		}
		m.RPOSeconds = &secs
		d.r.Facts.Load = fmt.Sprintf("prefix %s: %d acknowledged, %d errors, %d uncertain, longest gap between acks %s",
			lr.Stats.Prefix, lr.Stats.Acked, lr.Stats.Errors, lr.Stats.Uncertain, lr.Stats.LongestGap.Round(time.Millisecond))
	}
	f := &d.r.Facts
	f.GatesBlocked = sortedKeys(d.gates)
	for s := range d.serials {
		f.BlockedSerials = append(f.BlockedSerials, s)
	}
	slices.Sort(f.BlockedSerials)
	f.Freezes = sortedKeys(d.freezes)
	f.Alarms = sortedKeys(d.alarms)
	f.ActiveSite = final.ActiveSite
	f.ReplicationCaughtUp = final.CaughtUp
	f.Vars = d.vars
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// expect checks the scenario's expectations against what was measured.
func (d *drill) expect(final Observation, lr *LoadResult) {
	x := d.s.Expect
	r := d.r
	add := func(name, want, got string, ok bool) {
		r.Expect = append(r.Expect, report.Expectation{Name: name, Want: want, Got: got, OK: ok})
	}
	b2s := func(b bool) string { return strconv.FormatBool(b) }
	if x.GateBlocked != "" {
		ok := len(r.Facts.GatesBlocked) > 0 && (x.GateBlocked == "*" || slices.Contains(r.Facts.GatesBlocked, x.GateBlocked))
		add("gate_blocked", x.GateBlocked, orNone(strings.Join(r.Facts.GatesBlocked, ", ")), ok)
	}
	if x.SecondarySerialUnchanged != nil {
		changed := d.secondaryChanged()
		got := "unchanged"
		if changed != "" {
			got = changed
		}
		add("secondary_serial_unchanged", b2s(*x.SecondarySerialUnchanged), got, (changed == "") == *x.SecondarySerialUnchanged)
	}
	if x.Frozen != "" {
		ok := false
		for _, f := range r.Facts.Freezes {
			ok = ok || strings.HasPrefix(f, x.Frozen)
		}
		add("frozen", x.Frozen, orNone(strings.Join(r.Facts.Freezes, " | ")), ok)
	}
	if x.LostWrites != nil {
		got, ok := "not measured", false
		if r.Metrics.RPOWrites != nil {
			got, ok = strconv.Itoa(*r.Metrics.RPOWrites), *r.Metrics.RPOWrites == *x.LostWrites
		}
		add("lost_writes", strconv.Itoa(*x.LostWrites), got, ok)
	}
	if x.UnexpectedWrites != nil {
		got, ok := "not measured", false
		if lr != nil {
			got, ok = strconv.Itoa(len(lr.Verdict.Unexpected)), len(lr.Verdict.Unexpected) == *x.UnexpectedWrites
		}
		add("unexpected_writes", strconv.Itoa(*x.UnexpectedWrites), got, ok)
	}
	if x.SerialMonotonic != nil {
		add("serial_monotonic", b2s(*x.SerialMonotonic), b2s(r.Metrics.SerialMonotonic), r.Metrics.SerialMonotonic == *x.SerialMonotonic)
	}
	if x.DNSSECValid != nil {
		got, ok := "not measured", false
		if p := r.Metrics.DNSSECSecure; p != nil {
			got, ok = fmt.Sprintf("%.2f%% secure", *p), (*p == 100) == *x.DNSSECValid
		}
		add("dnssec_valid", b2s(*x.DNSSECValid), got, ok)
	}
	if x.MinDNSAvailability != nil {
		got, ok := "not measured", false
		if p := r.Metrics.DNSAvailability; p != nil {
			got, ok = fmt.Sprintf("%.2f%%", *p), *p >= *x.MinDNSAvailability
		}
		add("min_dns_availability", fmt.Sprintf("%g%%", *x.MinDNSAvailability), got, ok)
	}
	if x.MaxRTO != 0 {
		got, ok := "not reached", false
		if p := r.Metrics.RTOSeconds; p != nil {
			got, ok = fmt.Sprintf("%.1fs", *p), *p <= x.MaxRTO.Seconds()
		}
		add("max_rto", x.MaxRTO.String(), got, ok)
	}
	if x.ActiveSite != "" {
		add("active_site", x.ActiveSite, orNone(final.ActiveSite), final.ActiveSite == x.ActiveSite)
	}
	if x.Alarm != "" {
		var hits []string
		for _, a := range r.Facts.Alarms {
			if strings.Contains(a, x.Alarm) {
				hits = append(hits, a)
			}
		}
		add("alarm", x.Alarm, orNone(strings.Join(hits, " | ")), len(hits) > 0)
	}
	if x.ReplicationCaughtUp != nil {
		got := b2s(final.CaughtUp)
		if !final.CaughtUp {
			got += ": " + final.ReplDetail
		}
		add("replication_caught_up", b2s(*x.ReplicationCaughtUp), got, final.CaughtUp == *x.ReplicationCaughtUp)
	}
	if x.Aborted != nil {
		add("aborted", b2s(*x.Aborted), b2s(r.AbortReason != ""), (r.AbortReason != "") == *x.Aborted)
	}
}

// secondaryChanged says how the secondary's serial moved during the steps
// ("" when it never did).
func (d *drill) secondaryChanged() string {
	for _, sm := range d.samplers {
		if sm.Name != "dns-serial" {
			continue
		}
		for _, s := range sm.Samples() {
			if s.OK && !s.At.Before(d.stepsStart) && !s.At.After(d.stepsEnd) && s.Serial != d.baseline.Serial {
				return fmt.Sprintf("served %d (was %d) at +%s", s.Serial, d.baseline.Serial, s.At.Sub(d.r.Started).Round(time.Millisecond))
			}
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func (d *drill) outcome(steady, stepsFailed bool) {
	r := d.r
	expectFailed := false
	for _, e := range r.Expect {
		if !e.OK {
			expectFailed = true
			r.Reasons = append(r.Reasons, fmt.Sprintf("expected %s %s, got %s", e.Name, e.Want, e.Got))
		}
	}
	abortExpected := d.s.Expect.Aborted != nil && *d.s.Expect.Aborted
	switch {
	case !steady:
		r.Outcome = report.Error
	case r.AbortReason != "" && !abortExpected:
		r.Outcome = report.Aborted
	case expectFailed || (stepsFailed && r.AbortReason == ""):
		r.Outcome = report.Failed
	default:
		r.Outcome = report.Passed
	}
	for _, st := range r.Steps {
		if st.Phase == report.PhaseRollback && !st.OK {
			r.Reasons = append(r.Reasons, fmt.Sprintf("rollback step %q failed: %s", st.Name, st.Error))
			if r.Outcome == report.Passed {
				r.Outcome = report.Failed
			}
		}
	}
}
