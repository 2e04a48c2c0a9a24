package scenario

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// GateNames are the zone gates an expect.gate_blocked may name: the
// replicator's gates plus the agent's key-readiness gate.
var GateNames = map[string]bool{
	"origin": true, "apex": true, "serial": true, "budget": true, "reconcile": true,
	"required": true, "dnssec": true, "zonemd": true, "key-readiness": true,
}

var (
	validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	varRef    = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
)

// Vars are the variables every regdr step may use without capturing them.
var Vars = map[string]string{
	"zone":    "the lab TLD (test.)",
	"config":  "the deployment config path",
	"lab_dir": "the lab directory",
}

// validate checks what the decoder cannot see field by field: names that
// must refer to each other, vocabularies, and arguments.
func (s *Scenario) validate(d *decoder) {
	if s.Name != "" && !validName.MatchString(s.Name) {
		d.addAt(s.at("name"), "name %q: use lower-case letters, digits and '-' (it is part of the etcd history key)", s.Name)
	}
	probes := map[string]bool{}
	for i := range s.Probes {
		p := &s.Probes[i]
		spec, ok := Probes[p.Probe]
		switch {
		case p.Probe == "":
			d.addAt(p.Pos, "probes[%d]: probe is required; one of %s", i, names(Probes))
			continue
		case !ok:
			d.addAt(p.Pos, "probes[%d]: unknown probe %q; one of %s", i, p.Probe, names(Probes))
			continue
		case probes[p.Probe]:
			d.addAt(p.Pos, "probes[%d]: probe %q listed twice", i, p.Probe)
		}
		probes[p.Probe] = true
		if p.Rate == 0 {
			p.Rate = spec.DefaultRate
		}
		if p.Rate < spec.MinRate {
			d.addAt(p.Pos, "probes[%d]: %s at %v/s is too sparse to measure availability; at least %v/s", i, p.Probe, p.Rate, spec.MinRate)
		}
		if p.Rate > 50 {
			d.addAt(p.Pos, "probes[%d]: %s at %v/s: at most 50/s (the probes must not become the load)", i, p.Probe, p.Rate)
		}
	}
	for i, a := range s.Abort {
		if !probes[a.Probe] {
			d.addAt(a.Pos, "abort[%d]: probe %q is not among the scenario's probes", i, a.Probe)
		}
		if a.FailingFor == 0 {
			d.addAt(a.Pos, "abort[%d]: failing_for is required (how long the probe may fail before the drill halts)", i)
		}
	}
	for i := range s.Preconditions {
		if s.Preconditions[i].Within == 0 {
			s.Preconditions[i].Within = 30 * time.Second
		}
	}
	stepNames := map[string]bool{}
	vars := map[string]bool{}
	for k := range Vars {
		vars[k] = true
	}
	hasLoad := false
	for i, st := range s.Steps {
		if st.named && stepNames[st.Name] {
			d.addAt(st.Pos, "steps[%d]: step name %q used twice; names label the timeline and measure.rto.from", i, st.Name)
		}
		stepNames[st.Name] = true
		s.checkStep(d, "steps", i, st, vars)
		if st.Action == "start-load" {
			hasLoad = true
		}
	}
	for i, st := range s.Rollback {
		s.checkStep(d, "rollback", i, st, vars)
	}
	if r := s.Measure.RTO; r != nil && r.From != "" && !stepNames[r.From] {
		d.addAt(r.Pos, "measure.rto.from: no step is named %q", r.From)
	}
	if s.Measure.RPO && !hasLoad {
		d.addAt(s.at("measure"), "measure.rpo: RPO is measured from the load journal, but no step starts load (action: start-load)")
	}
	x := s.Expect
	if (x.LostWrites != nil || x.UnexpectedWrites != nil) && !s.Measure.RPO {
		d.addAt(s.at("expect"), "expect.lost_writes/unexpected_writes need measure.rpo: true")
	}
	if x.MaxRTO != 0 && s.Measure.RTO == nil {
		d.addAt(s.at("expect"), "expect.max_rto needs measure.rto")
	}
	if x.GateBlocked != "" && x.GateBlocked != "*" && !GateNames[x.GateBlocked] {
		d.addAt(s.at("expect"), "expect.gate_blocked: unknown gate %q; one of %s (or * for any)", x.GateBlocked, names(GateNames))
	}
	if x.DNSSECValid != nil && !probes["dnssec"] {
		d.addAt(s.at("expect"), "expect.dnssec_valid needs the dnssec probe")
	}
	if (x.MinDNSAvailability != nil || x.SerialMonotonic != nil || x.SecondarySerialUnchanged != nil) && !probes["dns-serial"] {
		d.addAt(s.at("expect"), "expect.min_dns_availability/serial_monotonic/secondary_serial_unchanged need the dns-serial probe")
	}
	if x.Aborted != nil && *x.Aborted && len(s.Abort) == 0 {
		d.addAt(s.at("expect"), "expect.aborted: the scenario has no abort conditions")
	}
	// Problems were appended out of file order; sort for reading.
	sortProblems(d.probs)
}

func (s *Scenario) checkStep(d *decoder, list string, i int, st Step, vars map[string]bool) {
	w := list + "[" + strconv.Itoa(i) + "]"
	if st.Action != "" {
		spec, ok := Actions[st.Action]
		if !ok {
			d.addAt(st.Pos, "%s: unknown action %q; one of %s", w, st.Action, names(Actions))
			return
		}
		allowed := map[string]bool{}
		for _, a := range spec.Required {
			allowed[a] = true
			if st.Args[a] == "" {
				d.addAt(st.Pos, "%s: action %s needs args.%s", w, st.Action, a)
			}
		}
		for _, a := range spec.Optional {
			allowed[a] = true
		}
		for k, v := range st.Args {
			if !allowed[k] {
				d.addAt(st.Pos, "%s: action %s has no argument %q (takes: %s)", w, st.Action, k,
					strings.Join(append(append([]string{}, spec.Required...), spec.Optional...), ", "))
				continue
			}
			if err := checkArg(k, v); err != "" {
				d.addAt(st.Pos, "%s: args.%s: %s", w, k, err)
			}
		}
	}
	if st.Regdr != nil {
		for _, a := range st.Regdr.Args {
			if a == "--config" || strings.HasPrefix(a, "--config=") {
				d.addAt(st.Pos, "%s.regdr: do not pass --config; the runner adds the deployment's", w)
			}
			for _, m := range varRef.FindAllStringSubmatch(a, -1) {
				if !vars[m[1]] {
					d.addAt(st.Pos, "%s.regdr: ${%s} is not set by an earlier step's capture (known: %s)", w, m[1], strings.Join(sortedKeys(vars), ", "))
				}
			}
		}
		for v := range st.Regdr.Capture {
			vars[v] = true
		}
	}
	if st.Wait != nil && st.Wait.Duration > 10*time.Minute {
		d.addAt(st.Pos, "%s.wait: duration %s is longer than a drill should hold (10m at most)", w, st.Wait.Duration)
	}
}

func checkArg(k, v string) string {
	switch k {
	case "names":
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			return "want a whole number of names, at least 1"
		}
	case "fraction":
		if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 || f >= 1 {
			return "want a fraction between 0 and 1, e.g. 0.5"
		}
	case "rate":
		if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 || f > 1000 {
			return "want writes per second, more than 0 and at most 1000"
		}
	case "delay":
		if dd, err := time.ParseDuration(v); err != nil || dd <= 0 || dd > 10*time.Second {
			return "want a duration like 50ms, at most 10s"
		}
	case "which":
		if v != "zsk" && v != "ksk" {
			return "want zsk or ksk"
		}
	case "site":
		if !validName.MatchString(v) {
			return "want a site name"
		}
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Col < ps[j].Col
	})
}

func sortStrings(s []string) { sort.Strings(s) }
