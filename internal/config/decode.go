package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// decoder fills a Config from a yaml.Node tree by walking both together.
// yaml.v3 can reject unknown fields (KnownFields), but it stops at the
// first; walking the tree ourselves reports every unknown field, type
// error and duplicate key in one pass, each with its line and column.
type decoder struct {
	file  string
	probs Problems
	// pos maps a field path to the node it was read from, so problems found
	// later (Validate, file checks) can be placed by their path.
	pos map[string]*yaml.Node
	// bad holds paths that already have a problem from decoding, so
	// Validate does not also call them "missing".
	bad map[string]bool
	// budget is how many more nodes the walk may visit. Aliases let a small
	// file name one big mapping many times (a "billion laughs"); the walk
	// stops once it has done more work than the file's size justifies.
	// Without aliases every node takes at least two bytes of text, so a
	// budget of one node per byte never stops an honest file.
	budget int
}

func newDecoder(file string, size int) *decoder {
	return &decoder{file: file, pos: map[string]*yaml.Node{}, bad: map[string]bool{},
		budget: size + 1000}
}

// spend uses one unit of budget and says whether the walk may go on.
func (d *decoder) spend(n *yaml.Node, path string) bool {
	d.budget--
	if d.budget == 0 {
		d.add(n, path, "aliases expand to far more than the file holds; write the values out")
	}
	return d.budget > 0
}

// parseNode reads exactly one YAML document. The problem it returns, if
// any, is a syntax problem with the best position yaml.v3 gives.
func parseNode(data []byte, file string) (*yaml.Node, *Problem) {
	if line, col, ok := badByte(data); ok {
		// yaml.v3 reports these without a position; find it ourselves.
		return nil, &Problem{File: file, Line: line, Column: col,
			Msg: "not UTF-8 text, or holds a control character YAML forbids"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problem{File: file, Line: 1, Column: 1, Msg: "empty config"}
		}
		return nil, syntaxProblem(file, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(file, err)
	default:
		// A second document would be silently ignored by every reader.
		return nil, &Problem{File: file, Line: extra.Line, Column: extra.Column,
			Msg: "more than one YAML document; a config is one document"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	return root, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxProblem(file string, err error) *Problem {
	msg := err.Error()
	// yaml.v3 sometimes has no line for errors at the very start.
	p := &Problem{File: file, Line: 1, Msg: strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			p.Line = n
		}
		p.Msg = m[2]
	}
	p.Msg = "YAML syntax: " + p.Msg
	return p
}

// badByte finds the first byte YAML does not accept as text: invalid
// UTF-8 or a C0/C1 control character other than tab, newline and CR.
func badByte(data []byte) (line, col int, found bool) {
	line, col = 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		bad := (r == utf8.RuneError && size <= 1) ||
			(r < 0x20 && r != '\t' && r != '\n' && r != '\r') ||
			(r >= 0x7f && r <= 0x9f && r != 0x85) ||
			r == 0xfffe || r == 0xffff
		if bad {
			return line, col, true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return 0, 0, false
}

func (d *decoder) add(n *yaml.Node, path, format string, args ...any) {
	d.bad[path] = true
	d.probs = append(d.probs, Problem{File: d.file, Line: n.Line, Column: n.Column,
		Path: path, Msg: fmt.Sprintf(format, args...)})
}

// place gives p the position of its path, or of the nearest enclosing
// field that appeared in the file (a missing field is reported where its
// parent mapping starts).
func (d *decoder) place(p *Problem) {
	for q := p.Path; ; q = parentPath(q) {
		if n, ok := d.pos[q]; ok {
			p.Line, p.Column = n.Line, n.Column
			return
		}
		if q == "" {
			return
		}
	}
}

// reported says whether a problem at path is already covered by a decode
// problem at path or at one of its ancestors.
func (d *decoder) reported(path string) bool {
	for q := path; ; q = parentPath(q) {
		if d.bad[q] {
			return true
		}
		if q == "" {
			return false
		}
	}
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

// value decodes n into v. key is the mapping key n was the value of, if
// any: a field whose value is a block is best pointed at by its key line.
func (d *decoder) value(n, key *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n, path) {
		return
	}
	if key != nil && n.Kind != yaml.ScalarNode && n.Kind != yaml.AliasNode {
		d.pos[path] = key
	} else {
		d.pos[path] = n
	}
	// Aliases are followed; the walk is bounded by the depth of Config's
	// types, so an alias cycle cannot recurse forever, and no type nests a
	// slice in a slice, so aliases cannot multiply the work either.
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	// An empty value ("timeout:" or "~") means "not set": the default,
	// or the zero value, stays.
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		if err := u.UnmarshalYAML(n); err != nil {
			d.add(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, key, v.Elem(), path)
	case reflect.Slice:
		d.sequence(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "expected a mapping of fields, got %s", describeNode(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.spend(k, path) {
			return
		}
		for k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.add(k, path, "field names must be plain strings, got %s", describeNode(k))
			continue
		}
		fp := joinPath(path, k.Value)
		if k.ShortTag() == "!!merge" {
			// yaml.v3 merges "<<" only when decoding into Go values, and
			// a merged field would have no line of its own to report.
			d.add(k, fp, "merge keys (<<) are not supported; write the fields out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.add(k, fp, "duplicate field %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		idx, ok := fields[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := closest(k.Value, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.add(k, fp, "%s", msg)
			continue
		}
		d.value(val, k, v.Field(idx), fp)
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.add(n, path, "expected a list, got %s", describeNode(n))
		return
	}
	if len(n.Content) == 0 {
		// nil, not empty: Marshal writes both as [], and Parse(Marshal(c))
		// must equal c.
		v.SetZero()
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		el := s.Index(i)
		if k, ok := el.Addr().Interface().(*TSIGKey); ok {
			k.Algorithm = defaultTSIGAlgorithm
		}
		d.value(e, nil, el, fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	want := map[reflect.Kind]string{
		reflect.String:  "a string",
		reflect.Bool:    "true or false",
		reflect.Int:     "an integer",
		reflect.Float64: "a number",
	}[v.Kind()]
	if n.Kind != yaml.ScalarNode {
		d.add(n, path, "expected %s, got %s", want, describeNode(n))
		return
	}
	if v.Kind() == reflect.String {
		// Any scalar is its text: a site named 7 is the site "7".
		v.SetString(n.Value)
		return
	}
	tmp := reflect.New(v.Type())
	if err := n.Decode(tmp.Interface()); err != nil {
		d.add(n, path, "expected %s, got %q", want, n.Value)
		return
	}
	v.Set(tmp.Elem())
}

// yamlFields maps each YAML field name of struct type t to its index.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

// closest suggests the known field a typo most likely meant: within two
// edits, so "gossip_adr" suggests "gossip_addr" but "foo" suggests nothing.
func closest(name string, fields map[string]int) string {
	best, bestDist := "", 3
	for f := range fields {
		if dist := editDistance(name, f); dist < bestDist || (dist == bestDist && f < best) {
			best, bestDist = f, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of a field name; skip the work
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	case yaml.AliasNode:
		return "an alias"
	default:
		return "nothing"
	}
}
