package report

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"
	"time"
)

// Timeline geometry: one row per step, then one strip per probe, on a
// time axis from the drill's start to its end.
const (
	tlWidth   = 1340 // whole SVG
	tlLabel   = 330  // left column for labels
	tlRow     = 22
	tlTop     = 30
	tlStripH  = 16
	tlPadding = 10
)

type svgBar struct {
	X, Y, W, H  float64
	Class, Text string
	Title       string
	TX, TY      float64
}

type svgData struct {
	Width, Height       float64
	Bars, Samples       []svgBar
	Labels              []svgBar
	Ticks               []svgBar
	RTO                 *svgBar
	AxisY, PlotX, PlotW float64
}

// timeline lays out the SVG; it is plain geometry so the template stays
// free of arithmetic.
func timeline(r *Report) svgData {
	start, end := r.Started, r.Finished
	if !end.After(start) {
		end = start.Add(time.Second)
	}
	span := end.Sub(start).Seconds()
	plotW := float64(tlWidth - tlLabel - tlPadding)
	x := func(t time.Time) float64 {
		f := t.Sub(start).Seconds() / span
		return float64(tlLabel) + min(max(f, 0), 1)*plotW
	}
	d := svgData{Width: tlWidth, PlotX: tlLabel, PlotW: plotW}
	y := float64(tlTop)
	for i, s := range r.Steps {
		cls := "bar " + s.Phase
		if !s.OK {
			cls += " failed"
		}
		w := max(x(s.End)-x(s.Start), 2)
		title := fmt.Sprintf("%s: %s (%s)", s.Phase, s.Name, s.End.Sub(s.Start).Round(time.Millisecond))
		if s.Error != "" {
			title += ": " + s.Error
		}
		d.Bars = append(d.Bars, svgBar{X: x(s.Start), Y: y + 3, W: w, H: tlRow - 6, Class: cls, Title: title})
		d.Labels = append(d.Labels, svgBar{TX: tlLabel - 8, TY: y + tlRow/2 + 4, Text: clip(fmt.Sprintf("%d. %s", i+1, s.Name), 48), Class: "label " + s.Phase, Title: s.Name})
		y += tlRow
	}
	y += 8
	for _, p := range r.Probes {
		d.Labels = append(d.Labels, svgBar{TX: tlLabel - 8, TY: y + tlStripH/2 + 4, Text: fmt.Sprintf("probe %s (%.1f%%)", p.Name, p.OKRatio()), Class: "label probe"})
		for i, s := range p.Samples {
			next := end
			if i+1 < len(p.Samples) {
				next = p.Samples[i+1].At
			}
			cls, t := "ok", s.Value
			if !s.OK {
				cls, t = "bad", s.Error
			}
			d.Samples = append(d.Samples, svgBar{X: x(s.At), Y: y, W: max(x(next)-x(s.At), 1), H: tlStripH, Class: "sample " + cls,
				Title: s.At.Sub(start).Round(time.Millisecond).String() + " " + t})
		}
		y += tlStripH + 6
	}
	if m := r.Metrics; m.RTOSeconds != nil {
		d.RTO = &svgBar{X: x(m.RTOStart), Y: tlTop - 14, W: max(x(m.RTOEnd)-x(m.RTOStart), 2), H: y - tlTop + 14, Class: "rto",
			Text: fmt.Sprintf("RTO %.1f s", *m.RTOSeconds)}
		d.RTO.TX, d.RTO.TY = d.RTO.X+4, tlTop-4
	}
	d.AxisY = y + 6
	// A tick every "nice" number of seconds, about ten across.
	step := niceStep(span / 10)
	for t := 0.0; t <= span+1e-9; t += step {
		tx := float64(tlLabel) + t/span*plotW
		d.Ticks = append(d.Ticks, svgBar{X: tx, TX: tx, TY: d.AxisY + 16, Text: fmt.Sprintf("%gs", t)})
	}
	d.Height = d.AxisY + 26
	return d
}

func niceStep(raw float64) float64 {
	for _, s := range []float64{0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if raw <= s {
			return s
		}
	}
	return 1200
}

type htmlData struct {
	R        *Report
	Outcome  string
	Metrics  [][2]string
	SVG      svgData
	Started  string
	Duration string
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"rel":  func(r *Report, t time.Time) string { return "+" + t.Sub(r.Started).Round(time.Millisecond).String() },
	"took": func(s Step) string { return s.End.Sub(s.Start).Round(time.Millisecond).String() },
	"ok": func(b bool) string {
		if b {
			return "ok"
		}
		return "fail"
	},
	"f1":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"pct":  func(p Probe) string { return fmt.Sprintf("%.2f%%", p.OKRatio()) },
	"join": strings.Join,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Drill {{.R.Scenario}}: {{.Outcome}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600;text-transform:uppercase;font-size:12px}
.passed{background:#1f883d}.failed,.error{background:#cf222e}.aborted{background:#bf8700}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1f883d;font-weight:600}.fail{color:#cf222e;font-weight:600}
.meta{color:#57606a}.desc{max-width:900px;white-space:pre-wrap}
svg{border:1px solid #d0d7de;background:#fbfcfd}
svg .bar.step{fill:#0969da}svg .bar.precondition,svg .bar.verify{fill:#8c959f}svg .bar.rollback{fill:#8250df}
svg .bar.failed{fill:#cf222e}svg .sample.ok{fill:#2da44e}svg .sample.bad{fill:#cf222e}
svg .rto{fill:#fff8c5;stroke:#bf8700;stroke-dasharray:4 3}svg .rtotext{fill:#7d4e00;font-weight:600}
svg text{font-size:12px;fill:#1d2430}svg .label{text-anchor:end}svg .label.rollback{fill:#8250df}
svg .tick{stroke:#d0d7de}svg .ticktext{text-anchor:middle;fill:#57606a;font-size:11px}
</style></head><body>
<h1>Drill {{.R.Scenario}} <span class="badge {{.Outcome}}">{{.Outcome}}</span></h1>
<div class="meta">target {{.R.Target}} · started {{.Started}} · took {{.Duration}}{{if .R.File}} · {{.R.File}}{{end}}</div>
{{if .R.Description}}<p class="desc">{{.R.Description}}</p>{{end}}
{{if .R.AbortReason}}<p class="fail">Aborted: {{.R.AbortReason}}</p>{{end}}
{{range .R.Reasons}}<p class="fail">{{.}}</p>{{end}}
<h2>Timeline</h2>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{{.SVG.Width}}" height="{{.SVG.Height}}" viewBox="0 0 {{.SVG.Width}} {{.SVG.Height}}" role="img" aria-label="drill timeline">
{{with .SVG.RTO}}<rect class="rto" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Text}}</title></rect><text class="rtotext" x="{{.TX}}" y="{{.TY}}">{{.Text}}</text>{{end}}
{{range .SVG.Ticks}}<line class="tick" x1="{{.X}}" x2="{{.X}}" y1="20" y2="{{$.SVG.AxisY}}"/><text class="ticktext" x="{{.TX}}" y="{{.TY}}">{{.Text}}</text>
{{end}}{{range .SVG.Bars}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" rx="3"><title>{{.Title}}</title></rect>
{{end}}{{range .SVG.Samples}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{end}}{{range .SVG.Labels}}<text class="{{.Class}}" x="{{.TX}}" y="{{.TY}}">{{if .Title}}<title>{{.Title}}</title>{{end}}{{.Text}}</text>
{{end}}</svg>
<h2>Measurements</h2>
<table id="metrics">{{range .Metrics}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
{{if .R.Expect}}<h2>Expectations</h2>
<table id="expectations"><tr><th>expectation</th><th>want</th><th>got</th><th></th></tr>
{{range .R.Expect}}<tr><td>{{.Name}}</td><td>{{.Want}}</td><td>{{.Got}}</td><td class="{{ok .OK}}">{{ok .OK}}</td></tr>{{end}}</table>{{end}}
<h2>Steps</h2>
<table id="steps"><tr><th>phase</th><th>step</th><th>start</th><th>took</th><th>result</th></tr>
{{range .R.Steps}}<tr class="step-row"><td>{{.Phase}}</td><td class="step-name">{{.Name}}</td><td>{{rel $.R .Start}}</td><td>{{took .}}</td><td class="{{ok .OK}}">{{ok .OK}}{{if .Error}}: {{.Error}}{{else if .Detail}} · {{.Detail}}{{end}}</td></tr>
{{end}}</table>
{{if .R.Probes}}<h2>Probes</h2>
<table id="probes"><tr><th>probe</th><th>rate</th><th>samples</th><th>passed</th></tr>
{{range .R.Probes}}<tr><td>{{.Name}}</td><td>{{.Rate}}/s</td><td>{{len .Samples}}</td><td>{{pct .}}</td></tr>{{end}}</table>{{end}}
{{with .R.Facts}}<h2>Observed</h2><ul>
{{if .GatesBlocked}}<li>gates that blocked a version: {{join .GatesBlocked ", "}}</li>{{end}}
{{range .Freezes}}<li>freeze: {{.}}</li>{{end}}{{range .Alarms}}<li>alarm: {{.}}</li>{{end}}
{{if .ActiveSite}}<li>active site at the end: {{.ActiveSite}}</li>{{end}}{{if .Load}}<li>load: {{.Load}}</li>{{end}}
</ul>{{end}}
</body></html>
`))

// HTML renders the report as one self-contained page: inline CSS and SVG,
// no scripts, no external assets, so it opens from a file, an e-mail
// attachment or an air-gapped machine alike.
func HTML(r *Report) ([]byte, error) {
	var b bytes.Buffer
	err := page.Execute(&b, htmlData{
		R: r, Outcome: r.Outcome, Metrics: MetricRows(r), SVG: timeline(r),
		Started: r.Started.UTC().Format(time.RFC3339), Duration: r.Duration().Round(time.Millisecond).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("render the HTML report of %s: %w", r.Scenario, err)
	}
	return b.Bytes(), nil
}

// clip shortens a label to n runes so it fits the label column; the whole
// text stays in the tooltip and the steps table.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
