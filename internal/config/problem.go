package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a config, placed so an editor can jump to
// it. Path names the field the way the YAML nests it
// (sites[1].gossip_addr, indexes from 0), and is empty for a problem with
// the YAML text itself. Line and Column are 1-based; both are 0 when the
// config did not come from a file (Validate on a Config built in Go), and
// Column is 0 for YAML syntax errors, which yaml.v3 places by line only.
type Problem struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Path   string `json:"path"`
	Msg    string `json:"message"`
}

// Error reads like a compiler message:
// deployment.yaml:14:18: sites[1].gossip_addr: bad address "osaka": missing port
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteByte(':')
	}
	switch {
	case p.Line > 0 && p.Column > 0:
		fmt.Fprintf(&b, "%d:%d:", p.Line, p.Column)
	case p.Line > 0:
		// yaml.v3 gives syntax errors a line only.
		fmt.Fprintf(&b, "%d:", p.Line)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one pass, so a config can be fixed in
// one edit rather than one rerun per typo.
type Problems []Problem

// Error is one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Err is ps as an error, or nil when there are none. Returning a nil
// Problems directly as an error would give a non-nil interface.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// sortProblems orders problems as they appear in the file; problems
// without a position keep their relative order at the end.
func sortProblems(ps Problems) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
		)
	})
}
