package report

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/probe"
	"github.com/regdr/regdr/internal/etcdtest"
)

func sample(t0 time.Time) *Report {
	rto := 4.5
	lost := 2
	rpoSecs := 0.8
	avail := 97.5
	sec := 100.0
	r := &Report{
		Scenario: "tokyo-site-loss", Description: "The active site is lost <&> restored", Target: "lab /tmp/x",
		Started: t0, Finished: t0.Add(20 * time.Second), Outcome: Failed,
		Reasons: []string{"expected lost_writes 0, got 2"},
		Steps: []Step{
			{Phase: PhasePrecondition, Name: "agents-healthy", Kind: "condition", Start: t0, End: t0.Add(100 * time.Millisecond), OK: true},
			{Phase: PhaseStep, Name: "tokyo's database dies", Kind: "action", Start: t0.Add(time.Second), End: t0.Add(2 * time.Second), OK: true, Detail: "killed"},
			{Phase: PhaseStep, Name: "osaka | is active", Kind: "wait", Start: t0.Add(2 * time.Second), End: t0.Add(6 * time.Second), OK: false, Error: "timeout"},
			{Phase: PhaseRollback, Name: "tokyo's database starts", Kind: "action", Start: t0.Add(6 * time.Second), End: t0.Add(8 * time.Second), OK: true},
		},
		Probes: []Probe{{Name: "dns-serial", Rate: 10, Samples: []probe.Sample{
			{At: t0, OK: true, Serial: 5, Value: "5"}, {At: t0.Add(3 * time.Second), OK: false, Error: "timeout"}, {At: t0.Add(4 * time.Second), OK: true, Serial: 6, Value: "6"},
		}}},
		Metrics: Metrics{RTOSeconds: &rto, RTOStart: t0.Add(time.Second), RTOEnd: t0.Add(5500 * time.Millisecond), RTOFrom: "tokyo's database dies", RTOUntil: "registry-writable",
			RPOWrites: &lost, RPOSeconds: &rpoSecs, Acked: 100, DNSAvailability: &avail, DNSQueries: 40, SerialMonotonic: true, FirstSerial: 5, LastSerial: 6, DNSSECSecure: &sec},
		Facts:  Facts{GatesBlocked: []string{"origin"}, Freezes: []string{"cold-start: x"}, ActiveSite: "osaka"},
		Expect: []Expectation{{Name: "lost_writes", Want: "0", Got: "2", OK: false}},
	}
	return r
}

func TestHTMLIsSelfContainedAndWellFormed(t *testing.T) {
	r := sample(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	b, err := HTML(r)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, bad := range []string{"<script", "<link", "src=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q: not self-contained", bad)
		}
	}
	// The SVG must be well-formed XML on its own (browsers render
	// nothing of a broken inline SVG).
	svg := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindString(page)
	if svg == "" {
		t.Fatal("no SVG timeline")
	}
	dec := xml.NewDecoder(strings.NewReader(svg))
	texts := ""
	rects := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed: %v", err)
			}
			break
		}
		switch v := tok.(type) {
		case xml.CharData:
			texts += string(v) + "\n"
		case xml.StartElement:
			if v.Name.Local == "rect" {
				rects++
				for _, a := range v.Attr {
					if a.Name.Local == "class" && a.Value == "rto" {
						texts += "[rto-window]\n"
					}
				}
			}
		}
	}
	for _, s := range r.Steps {
		if !strings.Contains(texts, s.Name) {
			t.Errorf("timeline lacks step label %q", s.Name)
		}
	}
	if !strings.Contains(texts, "[rto-window]") || !strings.Contains(texts, "RTO 4.5 s") {
		t.Errorf("timeline lacks the RTO window")
	}
	if want := len(r.Steps) + len(r.Probes[0].Samples) + 1; rects != want {
		t.Errorf("%d rects, want %d (steps, samples, RTO)", rects, want)
	}
	if !strings.Contains(page, "The active site is lost &lt;&amp;&gt; restored") {
		t.Errorf("description not escaped")
	}
	if !strings.Contains(page, `class="badge failed"`) {
		t.Errorf("outcome badge missing")
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(sample(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)))
	for _, want := range []string{
		"# Drill tokyo-site-loss: FAILED",
		"| RTO | 4.5 s (from \"tokyo's database dies\" until registry-writable) |",
		"| RPO | 2 acknowledged writes lost of 100 (0.8 s of writes) |",
		"| DNS availability | 97.50% of 40 queries answered |",
		"| lost_writes | 0 | 2 | FAIL |",
		`| step | osaka \| is active | +2s | 4s | FAIL timeout |`,
		"- freeze: cold-start: x",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestWriteAndRead(t *testing.T) {
	r := sample(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	f, err := Write(r, dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(f.HTML) != "tokyo-site-loss-20261124T120000Z.html" {
		t.Errorf("html %s", f.HTML)
	}
	back, err := Read(f.JSON)
	if err != nil {
		t.Fatal(err)
	}
	if back.Outcome != r.Outcome || len(back.Steps) != 4 || *back.Metrics.RTOSeconds != 4.5 || back.Probes[0].Samples[1].Error != "timeout" {
		t.Errorf("round trip lost data: %+v", back)
	}
	for _, p := range []string{f.Markdown, f.HTML} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestHistoryInEtcd(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	rtos := []float64{10, 8, 8}
	for i, rto := range rtos {
		r := sample(t0.Add(time.Duration(i) * time.Hour))
		r.Metrics.RTOSeconds = &rto
		if err := Record(ctx, cli, "/regdr", Summary(r, "/r.html", "alice")); err != nil {
			t.Fatal(err)
		}
	}
	other := sample(t0)
	other.Scenario = "osaka-loss"
	if err := Record(ctx, cli, "/regdr", Summary(other, "", "bob")); err != nil {
		t.Fatal(err)
	}
	// Recording the same run again changes nothing.
	again := sample(t0)
	again.Outcome = Passed
	if err := Record(ctx, cli, "/regdr", Summary(again, "", "eve")); err != nil {
		t.Fatal(err)
	}
	h, err := History(ctx, cli, "/regdr", "tokyo-site-loss")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[0].Outcome != Failed || h[0].By != "alice" || *h[2].RTOSeconds != 8 || !h[1].Started.After(h[0].Started) {
		t.Fatalf("history %+v", h)
	}
	all, err := History(ctx, cli, "/regdr", "")
	if err != nil || len(all) != 4 || all[0].Scenario != "osaka-loss" {
		t.Fatalf("all history %v %+v", err, all)
	}
	if got := Trend(h[0].RTOSeconds, h[1].RTOSeconds); got != "▼ -2.0" {
		t.Errorf("trend %q", got)
	}
	if got := Trend(h[1].RTOSeconds, h[2].RTOSeconds); got != "=" {
		t.Errorf("trend %q", got)
	}
	if got := Trend(nil, h[2].RTOSeconds); got != "" {
		t.Errorf("trend %q", got)
	}
}
