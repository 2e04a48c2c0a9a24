package report

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders the report for a ticket or a wiki page.
func Markdown(r *Report) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Drill %s: %s\n\n", r.Scenario, strings.ToUpper(r.Outcome))
	if r.Description != "" {
		p("%s\n\n", strings.TrimSpace(r.Description))
	}
	p("- target: %s\n- started: %s\n- finished: %s (%s)\n", r.Target,
		r.Started.UTC().Format(time.RFC3339), r.Finished.UTC().Format(time.RFC3339), r.Duration().Round(time.Millisecond))
	if r.File != "" {
		p("- scenario file: `%s`\n", r.File)
	}
	if r.AbortReason != "" {
		p("- **aborted**: %s\n", r.AbortReason)
	}
	for _, why := range r.Reasons {
		p("- %s\n", why)
	}
	p("\n## Measurements\n\n| metric | value |\n|---|---|\n")
	for _, m := range MetricRows(r) {
		p("| %s | %s |\n", m[0], mdEscape(m[1]))
	}
	if len(r.Expect) > 0 {
		p("\n## Expectations\n\n| expectation | want | got | |\n|---|---|---|---|\n")
		for _, e := range r.Expect {
			p("| %s | %s | %s | %s |\n", e.Name, mdEscape(e.Want), mdEscape(e.Got), okMark(e.OK))
		}
	}
	p("\n## Steps\n\n| phase | step | start | took | result |\n|---|---|---|---|---|\n")
	for _, s := range r.Steps {
		res := okMark(s.OK)
		if s.Error != "" {
			res += " " + s.Error
		} else if s.Detail != "" {
			res += " " + s.Detail
		}
		p("| %s | %s | +%s | %s | %s |\n", s.Phase, mdEscape(s.Name), s.Start.Sub(r.Started).Round(time.Millisecond),
			s.End.Sub(s.Start).Round(time.Millisecond), mdEscape(res))
	}
	if len(r.Probes) > 0 {
		p("\n## Probes\n\n| probe | rate | samples | passed |\n|---|---|---|---|\n")
		for _, pr := range r.Probes {
			p("| %s | %g/s | %d | %.2f%% |\n", pr.Name, pr.Rate, len(pr.Samples), pr.OKRatio())
		}
	}
	f := r.Facts
	if len(f.GatesBlocked)+len(f.Freezes)+len(f.Alarms) > 0 || f.Load != "" {
		p("\n## Observed\n\n")
		if len(f.GatesBlocked) > 0 {
			p("- gates that blocked a version: %s (serials %v)\n", strings.Join(f.GatesBlocked, ", "), f.BlockedSerials)
		}
		for _, fr := range f.Freezes {
			p("- freeze: %s\n", mdEscape(fr))
		}
		for _, a := range f.Alarms {
			p("- alarm: %s\n", mdEscape(a))
		}
		if f.Load != "" {
			p("- load: %s\n", f.Load)
		}
	}
	return b.String()
}

// MetricRows are the report's numbers as label/value pairs, shared by the
// Markdown and HTML renderings.
func MetricRows(r *Report) [][2]string {
	m := r.Metrics
	var rows [][2]string
	add := func(k, v string) { rows = append(rows, [2]string{k, v}) }
	switch {
	case m.RTOSeconds != nil:
		add("RTO", fmt.Sprintf("%.1f s (from %q until %s)", *m.RTOSeconds, m.RTOFrom, m.RTOUntil))
	case m.RTOFrom != "":
		add("RTO", fmt.Sprintf("not reached (from %q until %s)", m.RTOFrom, m.RTOUntil))
	}
	if m.RPOWrites != nil {
		v := fmt.Sprintf("%d acknowledged writes lost of %d", *m.RPOWrites, m.Acked)
		if m.RPOSeconds != nil {
			v += fmt.Sprintf(" (%.1f s of writes)", *m.RPOSeconds)
		}
		add("RPO", v)
	}
	if m.DNSAvailability != nil {
		add("DNS availability", fmt.Sprintf("%.2f%% of %d queries answered", *m.DNSAvailability, m.DNSQueries))
	}
	if m.DNSQueries > 0 {
		v := fmt.Sprintf("never decreased (%d → %d)", m.FirstSerial, m.LastSerial)
		if !m.SerialMonotonic {
			v = "DECREASED: " + strings.Join(m.SerialDecreases, "; ")
		}
		add("serial continuity", v)
	}
	if m.DNSSECSecure != nil {
		add("DNSSEC validity", fmt.Sprintf("%.2f%% of answers secure", *m.DNSSECSecure))
	}
	return rows
}

func okMark(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
