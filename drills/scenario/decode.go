package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one error in a scenario file, with where it is.
type Problem struct {
	File string
	Pos
	Msg string
}

func (p Problem) Error() string {
	f := p.File
	if f == "" {
		f = "<scenario>"
	}
	return fmt.Sprintf("%s:%d:%d: %s", f, p.Line, p.Col, p.Msg)
}

// Problems are every error found in one file, in file order.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads and validates a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return Parse(b, path)
}

// Parse decodes and validates a scenario. The error, if any, is Problems:
// every problem found, each with file:line:col.
func Parse(b []byte, file string) (*Scenario, error) {
	d := &decoder{file: file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{{File: file, Pos: Pos{1, 1}, Msg: "empty file: a scenario needs at least name and steps"}}
		}
		return nil, Problems{{File: file, Pos: yamlErrPos(err), Msg: "YAML: " + yamlErrMsg(err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{File: file, Pos: pos(&extra), Msg: "a scenario file holds one YAML document; found a second"}}
	}
	s := d.scenario(&doc)
	// Semantic checks run even after structural problems, so one pass
	// reports everything; each check looks only at what was decoded.
	s.validate(d)
	if len(d.probs) > 0 {
		return nil, d.probs
	}
	s.File = file
	return s, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)(?::(\d+))?`)

// yamlErrPos pulls the position out of a yaml.v3 syntax error ("yaml: line
// 3: did not find expected key").
func yamlErrPos(err error) Pos {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return Pos{1, 1}
	}
	l, _ := strconv.Atoi(m[1])
	c := 1
	if m[2] != "" {
		c, _ = strconv.Atoi(m[2])
	}
	return Pos{l, c}
}

func yamlErrMsg(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	return yamlLine.ReplaceAllString(s, "")
}

type decoder struct {
	file  string
	probs Problems
}

func pos(n *yaml.Node) Pos { return Pos{n.Line, n.Column} }

func (d *decoder) add(n *yaml.Node, format string, args ...any) {
	d.addAt(pos(n), format, args...)
}

func (d *decoder) addAt(p Pos, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the scalar %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// fields walks a mapping, calling the handler of each known key; unknown
// and repeated keys are problems. It returns false if n is not a mapping.
func (d *decoder) fields(n *yaml.Node, what string, h map[string]func(v *yaml.Node)) bool {
	if n.Kind == yaml.AliasNode {
		d.add(n, "%s: aliases are not accepted in scenarios; write the value out", what)
		return false
	}
	if n.Kind != yaml.MappingNode {
		d.add(n, "%s: want a mapping, got %s", what, kindName(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.add(k, "%s: keys must be plain words", what)
			continue
		}
		if seen[k.Value] {
			d.add(k, "%s: %q given twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		f, ok := h[k.Value]
		if !ok {
			d.add(k, "%s: unknown field %q; known: %s", what, k.Value, names(h))
			continue
		}
		if v.Kind == yaml.AliasNode {
			d.add(v, "%s.%s: aliases are not accepted in scenarios; write the value out", what, k.Value)
			continue
		}
		f(v)
	}
	return true
}

func (d *decoder) str(n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float") {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			d.add(n, "%s: empty; want text", what)
			return ""
		}
		d.add(n, "%s: want text, got %s", what, kindName(n))
		return ""
	}
	return n.Value
}

func (d *decoder) boolean(n *yaml.Node, what string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.add(n, "%s: want true or false, got %s", what, kindName(n))
		return false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
}

func (d *decoder) boolPtr(n *yaml.Node, what string) *bool {
	b := d.boolean(n, what)
	return &b
}

func (d *decoder) integer(n *yaml.Node, what string) int {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.add(n, "%s: want a whole number, got %s", what, kindName(n))
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		d.add(n, "%s: %v", what, err)
	}
	return v
}

func (d *decoder) number(n *yaml.Node, what string) float64 {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.add(n, "%s: want a number, got %s", what, kindName(n))
		return 0
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil {
		d.add(n, "%s: %v", what, err)
	}
	return v
}

// duration accepts Go durations ("30s", "1m30s"); a bare number is refused
// because its unit would be a guess.
func (d *decoder) duration(n *yaml.Node, what string) time.Duration {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.add(n, "%s: want a duration like 30s, got %s", what, kindName(n))
		return 0
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.add(n, "%s: %q is not a duration (write it like 500ms, 30s or 2m)", what, n.Value)
		return 0
	}
	if v <= 0 {
		d.add(n, "%s: %s must be positive", what, n.Value)
	}
	return v
}

func (d *decoder) strings(n *yaml.Node, what string) []string {
	if n.Kind != yaml.SequenceNode {
		d.add(n, "%s: want a list, got %s", what, kindName(n))
		return nil
	}
	out := []string{}
	for i, e := range n.Content {
		out = append(out, d.str(e, fmt.Sprintf("%s[%d]", what, i)))
	}
	return out
}

func (d *decoder) strMap(n *yaml.Node, what string) map[string]string {
	if n.Kind != yaml.MappingNode {
		d.add(n, "%s: want a mapping, got %s", what, kindName(n))
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := d.str(k, what+" key")
		if _, dup := out[key]; dup {
			d.add(k, "%s: %q given twice", what, key)
		}
		out[key] = d.str(v, what+"."+key)
	}
	return out
}

func (d *decoder) cond(n *yaml.Node, what string) Cond {
	s := d.str(n, what)
	if s == "" {
		return Cond{Pos: pos(n)}
	}
	c, err := ParseCond(s)
	if err != nil {
		d.add(n, "%s: %v", what, err)
	}
	c.Pos = pos(n)
	return c
}

func (d *decoder) list(n *yaml.Node, what string, each func(i int, e *yaml.Node)) {
	if n.Kind != yaml.SequenceNode {
		d.add(n, "%s: want a list, got %s", what, kindName(n))
		return
	}
	for i, e := range n.Content {
		each(i, e)
	}
}

func (d *decoder) scenario(doc *yaml.Node) *Scenario {
	s := &Scenario{}
	root := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	s.Pos = pos(root)
	s.keyPos = map[string]Pos{}
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			s.keyPos[root.Content[i].Value] = pos(root.Content[i+1])
		}
	}
	seen := map[string]bool{}
	mark := func(k string, f func(v *yaml.Node)) func(v *yaml.Node) {
		return func(v *yaml.Node) { seen[k] = true; f(v) }
	}
	ok := d.fields(root, "scenario", map[string]func(*yaml.Node){
		"name":        mark("name", func(v *yaml.Node) { s.Name = d.str(v, "name") }),
		"description": func(v *yaml.Node) { s.Description = d.str(v, "description") },
		"tags":        func(v *yaml.Node) { s.Tags = d.strings(v, "tags") },
		"target": func(v *yaml.Node) {
			d.fields(v, "target", map[string]func(*yaml.Node){
				"production": func(v *yaml.Node) { s.Target.Production = d.boolean(v, "target.production") },
			})
		},
		"preconditions": func(v *yaml.Node) {
			d.list(v, "preconditions", func(i int, e *yaml.Node) {
				s.Preconditions = append(s.Preconditions, d.precondition(e, fmt.Sprintf("preconditions[%d]", i)))
			})
		},
		"probes": func(v *yaml.Node) {
			d.list(v, "probes", func(i int, e *yaml.Node) {
				w := fmt.Sprintf("probes[%d]", i)
				p := ProbeSpec{Pos: pos(e)}
				if d.fields(e, w, map[string]func(*yaml.Node){
					"probe": func(v *yaml.Node) { p.Probe = d.str(v, w+".probe") },
					"rate":  func(v *yaml.Node) { p.Rate = d.number(v, w+".rate") },
				}) {
					s.Probes = append(s.Probes, p)
				}
			})
		},
		"abort": func(v *yaml.Node) {
			d.list(v, "abort", func(i int, e *yaml.Node) {
				w := fmt.Sprintf("abort[%d]", i)
				a := Abort{Pos: pos(e)}
				if d.fields(e, w, map[string]func(*yaml.Node){
					"probe":       func(v *yaml.Node) { a.Probe = d.str(v, w+".probe") },
					"failing_for": func(v *yaml.Node) { a.FailingFor = d.duration(v, w+".failing_for") },
				}) {
					s.Abort = append(s.Abort, a)
				}
			})
		},
		"steps": mark("steps", func(v *yaml.Node) {
			d.list(v, "steps", func(i int, e *yaml.Node) {
				s.Steps = append(s.Steps, d.step(e, fmt.Sprintf("steps[%d]", i)))
			})
		}),
		"rollback": func(v *yaml.Node) {
			d.list(v, "rollback", func(i int, e *yaml.Node) {
				s.Rollback = append(s.Rollback, d.step(e, fmt.Sprintf("rollback[%d]", i)))
			})
		},
		"measure": func(v *yaml.Node) { d.measure(v, &s.Measure) },
		"expect":  func(v *yaml.Node) { d.expect(v, &s.Expect) },
	})
	if ok {
		if !seen["name"] {
			d.add(root, "scenario: name is required")
		}
		if !seen["steps"] {
			d.add(root, "scenario: steps are required (a drill that does nothing measures nothing)")
		}
	}
	return s
}

func (d *decoder) precondition(e *yaml.Node, w string) Precondition {
	p := Precondition{Pos: pos(e)}
	// The short form is just the condition: "- dns-answering".
	if e.Kind == yaml.ScalarNode {
		p.Cond = d.cond(e, w)
		return p
	}
	has := false
	d.fields(e, w, map[string]func(*yaml.Node){
		"condition": func(v *yaml.Node) { has = true; p.Cond = d.cond(v, w+".condition") },
		"within":    func(v *yaml.Node) { p.Within = d.duration(v, w+".within") },
	})
	if e.Kind == yaml.MappingNode && !has {
		d.add(e, "%s: condition is required", w)
	}
	return p
}

func (d *decoder) step(e *yaml.Node, w string) Step {
	st := Step{Pos: pos(e)}
	d.fields(e, w, map[string]func(*yaml.Node){
		"name":    func(v *yaml.Node) { st.Name = d.str(v, w+".name") },
		"action":  func(v *yaml.Node) { st.Action = d.str(v, w+".action") },
		"args":    func(v *yaml.Node) { st.Args = d.strMap(v, w+".args") },
		"timeout": func(v *yaml.Node) { st.Timeout = d.duration(v, w+".timeout") },
		"wait": func(v *yaml.Node) {
			wt := &Wait{}
			st.Wait = wt
			hasDuration := false
			d.fields(v, w+".wait", map[string]func(*yaml.Node){
				"for": func(v *yaml.Node) {
					c := d.cond(v, w+".wait.for")
					wt.For = &c
				},
				"duration": func(v *yaml.Node) { hasDuration = true; wt.Duration = d.duration(v, w+".wait.duration") },
				"timeout":  func(v *yaml.Node) { wt.Timeout = d.duration(v, w+".wait.timeout") },
			})
			if v.Kind == yaml.MappingNode && (wt.For == nil) == !hasDuration {
				d.add(v, "%s.wait: give exactly one of for (a condition) and duration", w)
			}
			if wt.For == nil && wt.Timeout != 0 {
				d.add(v, "%s.wait: timeout only applies to wait for a condition", w)
			}
		},
		"regdr": func(v *yaml.Node) {
			r := &Regdr{}
			st.Regdr = r
			hasArgs := false
			d.fields(v, w+".regdr", map[string]func(*yaml.Node){
				"args":          func(v *yaml.Node) { hasArgs = true; r.Args = d.strings(v, w+".regdr.args") },
				"expect_exit":   func(v *yaml.Node) { r.ExpectExit = d.integer(v, w+".regdr.expect_exit") },
				"expect_output": func(v *yaml.Node) { r.ExpectOutput = d.str(v, w+".regdr.expect_output") },
				"capture":       func(v *yaml.Node) { r.Capture = d.strMap(v, w+".regdr.capture") },
			})
			if v.Kind == yaml.MappingNode && (!hasArgs || len(r.Args) == 0) {
				d.add(v, "%s.regdr: args are required (the regdr command line after the binary)", w)
			}
		},
		"confirm": func(v *yaml.Node) {
			c := &Confirm{}
			st.Confirm = c
			d.fields(v, w+".confirm", map[string]func(*yaml.Node){
				"prompt": func(v *yaml.Node) { c.Prompt = d.str(v, w+".confirm.prompt") },
			})
			if c.Prompt == "" && v.Kind == yaml.MappingNode {
				d.add(v, "%s.confirm: prompt is required (what the operator confirms)", w)
			}
		},
	})
	if e.Kind != yaml.MappingNode {
		return st
	}
	n := 0
	for _, set := range []bool{st.Action != "", st.Wait != nil, st.Regdr != nil, st.Confirm != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		d.add(e, "%s: give exactly one of action, wait, regdr and confirm (found %d)", w, n)
	}
	if st.Args != nil && st.Action == "" {
		d.add(e, "%s: args belong to an action", w)
	}
	if st.Name == "" {
		st.Name = defaultName(st)
	} else {
		st.named = true
	}
	return st
}

func (d *decoder) measure(v *yaml.Node, m *Measure) {
	d.fields(v, "measure", map[string]func(*yaml.Node){
		"rpo": func(v *yaml.Node) { m.RPO = d.boolean(v, "measure.rpo") },
		"rto": func(v *yaml.Node) {
			r := &RTO{Pos: pos(v)}
			m.RTO = r
			var hasFrom, hasUntil bool
			d.fields(v, "measure.rto", map[string]func(*yaml.Node){
				"from":  func(v *yaml.Node) { hasFrom = true; r.From = d.str(v, "measure.rto.from") },
				"until": func(v *yaml.Node) { hasUntil = true; r.Until = d.cond(v, "measure.rto.until") },
			})
			if v.Kind == yaml.MappingNode && (!hasFrom || !hasUntil) {
				d.add(v, "measure.rto: needs from (a step name) and until (a condition)")
			}
		},
	})
}

func (d *decoder) expect(v *yaml.Node, x *Expect) {
	intp := func(v *yaml.Node, w string) *int {
		i := d.integer(v, w)
		if i < 0 {
			d.add(v, "%s: must not be negative", w)
		}
		return &i
	}
	d.fields(v, "expect", map[string]func(*yaml.Node){
		"gate_blocked":               func(v *yaml.Node) { x.GateBlocked = d.str(v, "expect.gate_blocked") },
		"secondary_serial_unchanged": func(v *yaml.Node) { x.SecondarySerialUnchanged = d.boolPtr(v, "expect.secondary_serial_unchanged") },
		"frozen":                     func(v *yaml.Node) { x.Frozen = d.str(v, "expect.frozen") },
		"lost_writes":                func(v *yaml.Node) { x.LostWrites = intp(v, "expect.lost_writes") },
		"unexpected_writes":          func(v *yaml.Node) { x.UnexpectedWrites = intp(v, "expect.unexpected_writes") },
		"serial_monotonic":           func(v *yaml.Node) { x.SerialMonotonic = d.boolPtr(v, "expect.serial_monotonic") },
		"dnssec_valid":               func(v *yaml.Node) { x.DNSSECValid = d.boolPtr(v, "expect.dnssec_valid") },
		"min_dns_availability": func(v *yaml.Node) {
			f := d.number(v, "expect.min_dns_availability")
			if f < 0 || f > 100 {
				d.add(v, "expect.min_dns_availability: %v is not a percentage (0 to 100)", f)
			}
			x.MinDNSAvailability = &f
		},
		"max_rto":               func(v *yaml.Node) { x.MaxRTO = d.duration(v, "expect.max_rto") },
		"active_site":           func(v *yaml.Node) { x.ActiveSite = d.str(v, "expect.active_site") },
		"alarm":                 func(v *yaml.Node) { x.Alarm = d.str(v, "expect.alarm") },
		"replication_caught_up": func(v *yaml.Node) { x.ReplicationCaughtUp = d.boolPtr(v, "expect.replication_caught_up") },
		"aborted":               func(v *yaml.Node) { x.Aborted = d.boolPtr(v, "expect.aborted") },
	})
}

// defaultName labels an unnamed step by what it does.
func defaultName(st Step) string {
	switch {
	case st.Action != "":
		if site := st.Args["site"]; site != "" {
			return st.Action + " " + site
		}
		return st.Action
	case st.Wait != nil && st.Wait.For != nil:
		return "wait for " + st.Wait.For.String()
	case st.Wait != nil:
		return "wait " + st.Wait.Duration.String()
	case st.Regdr != nil:
		return "regdr " + strings.Join(st.Regdr.Args, " ")
	case st.Confirm != nil:
		return "confirm"
	}
	return "step"
}
