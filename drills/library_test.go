package drills_test

import (
	"bytes"
	"context"
	"html"
	"image"
	"image/png"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/report"
	"github.com/regdr/regdr/drills/runner"
	"github.com/regdr/regdr/drills/scenario"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/replicator/pgctl"
)

// library is the scenarios TestLibrary runs on one shared lab, in order;
// each restores the steady state (its rollback and the re-verified
// preconditions) before the next starts. check adds assertions beyond the
// scenario's own expect: block.
var library = []struct {
	file  string
	check func(t *testing.T, r *report.Report)
}{
	{"se-2009-trailing-dot.yaml", func(t *testing.T, r *report.Report) {
		if !slices.Contains(r.Facts.GatesBlocked, "origin") {
			t.Errorf("origin gate did not block: gates %v", r.Facts.GatesBlocked)
		}
		// The secondary never served the broken serial.
		for _, s := range r.Facts.BlockedSerials {
			for _, p := range r.Probes {
				for _, smp := range p.Samples {
					if p.Name == "dns-serial" && smp.OK && smp.Serial == s {
						t.Errorf("secondary served blocked serial %d at %s", s, smp.At)
					}
				}
			}
		}
	}},
	{"hk-2004-partial-zone.yaml", nil},
	{"ripe-2017-empty-zonelet.yaml", nil},
	{"ripe-2012-cold-start.yaml", func(t *testing.T, r *report.Report) {
		if r.Metrics.RTOSeconds == nil {
			t.Errorf("no RTO measured to the cold-start freeze")
		}
	}},
	{"osaka-loss.yaml", func(t *testing.T, r *report.Report) {
		if r.Metrics.RPOWrites == nil || r.Metrics.Acked == 0 {
			t.Errorf("RPO not measured from a load with acknowledged writes: %+v", r.Metrics)
		}
	}},
	{"backup-missing.yaml", func(t *testing.T, r *report.Report) {
		if !slices.ContainsFunc(r.Facts.Alarms, func(a string) bool { return strings.Contains(a, "failed: integrity") }) {
			t.Errorf("no integrity failure among the alarms: %v", r.Facts.Alarms)
		}
	}},
	{"dr-key-missing.yaml", nil},
	{"planned-switchover-and-back.yaml", func(t *testing.T, r *report.Report) {
		if r.Metrics.RPOWrites == nil || *r.Metrics.RPOWrites != 0 || r.Metrics.Acked == 0 {
			t.Errorf("switchover and back: RPO %v writes of %d acknowledged, want 0 of some", r.Metrics.RPOWrites, r.Metrics.Acked)
		}
	}},
	// Last: it leaves osaka active.
	{"tokyo-site-loss.yaml", func(t *testing.T, r *report.Report) {
		if r.Metrics.RPOWrites == nil {
			t.Fatalf("no RPO measured: %+v", r.Metrics)
		}
		// tokyo's agent salvages what osaka lacks when it rejoins; the
		// file must list exactly the acknowledged writes the drill lost.
		var files []string
		deadline := time.Now().Add(90 * time.Second)
		for len(files) == 0 && time.Now().Before(deadline) {
			files, _ = filepath.Glob(filepath.Join(libLab.State.Dir, "tokyo", "salvage", "salvage-*.jsonl"))
			time.Sleep(time.Second)
		}
		if len(files) == 0 {
			t.Fatal("tokyo never wrote a salvage file")
		}
		f, err := os.Open(files[len(files)-1])
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, rows, err := pgctl.ReadSalvage(f)
		if err != nil {
			t.Fatal(err)
		}
		salvaged := map[int64]bool{}
		for _, row := range rows {
			salvaged[row.ID] = true
		}
		for _, id := range r.Metrics.Lost {
			if !salvaged[id] {
				t.Errorf("acknowledged write %d lost in the drill is not in the salvage file", id)
			}
		}
		t.Logf("tokyo-site-loss: %d acknowledged writes lost, %d rows salvaged", len(r.Metrics.Lost), len(rows))
	}},
}

// libLab is the lab TestLibrary runs on, for checks that read its files.
var libLab *lab.Lab

// notYet are library scenarios TestLibrary does not run yet, with why.
// They are validated by TestLibraryValid.
var notYet = map[string]string{}

// TestLibraryValid: every file in the library decodes and validates, and
// each is either run by TestLibrary or listed with its reason in notYet.
func TestLibraryValid(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.yaml")
	if err != nil || len(files) != 9 {
		t.Fatalf("want the nine library scenarios, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		s, err := scenario.Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		base := filepath.Base(f)
		if s.Name+".yaml" != base {
			t.Errorf("%s: scenario name %q does not match the file name", f, s.Name)
		}
		run := slices.ContainsFunc(library, func(e struct {
			file  string
			check func(t *testing.T, r *report.Report)
		}) bool {
			return e.file == base
		})
		if _, later := notYet[base]; run == later {
			t.Errorf("%s: must be either in the library table or in notYet (run=%v notYet=%v)", base, run, later)
		}
	}
}

// TestLibrary runs the library scenarios that need no failover on one
// lab, each asserting its expected outcome, then renders a real drill's
// HTML report in headless Chromium.
func TestLibrary(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 500})
	libLab = l
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	env, err := runner.NewLabEnv(l, filepath.Join(l.State.Dir, "drill-work"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	reportDir := t.TempDir()
	reports := map[string]report.Files{}
	for _, tc := range library {
		name := strings.TrimSuffix(tc.file, ".yaml")
		ok := t.Run(name, func(t *testing.T) {
			s, err := scenario.Load(filepath.Join("scenarios", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			r, err := runner.Run(ctx, s, runner.Options{Faults: env, Observer: env, Commander: env, Loader: env, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			files, err := report.Write(r, reportDir)
			if err != nil {
				t.Fatal(err)
			}
			reports[name] = files
			if err := report.Record(ctx, env.Etcd(), l.Cfg.Etcd.Prefix, report.Summary(r, files.HTML, "test")); err != nil {
				t.Errorf("record history: %v", err)
			}
			t.Log(report.Markdown(r))
			if r.Outcome != report.Passed {
				t.Errorf("outcome %s, want passed\n%s", r.Outcome, report.Markdown(r))
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
		if !ok {
			t.Logf("drill log:\n%s", lastLines(logs.String(), 40))
		}
	}

	t.Run("history", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h, err := report.History(ctx, env.Etcd(), l.Cfg.Etcd.Prefix, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != len(reports) {
			t.Errorf("history has %d entries, want %d", len(h), len(reports))
		}
	})

	t.Run("html-in-chromium", func(t *testing.T) {
		files, ok := reports["se-2009-trailing-dot"]
		if !ok {
			t.Fatal("no se-2009-trailing-dot report to render")
		}
		r, err := report.Read(files.JSON)
		if err != nil {
			t.Fatal(err)
		}
		checkInChromium(t, files.HTML, r)
	})
}

// checkInChromium opens the HTML report in headless Chromium: the
// screenshot must not be blank and the rendered DOM must hold every step.
func checkInChromium(t *testing.T, page string, r *report.Report) {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	// Self-contained: nothing fetched from anywhere.
	for _, ext := range []string{"http://", "https://", "<script", "<link"} {
		if i := bytes.Index(b, []byte(ext)); i >= 0 && !bytes.Contains(b[max(0, i-10):i], []byte("xmlns")) {
			t.Errorf("report references %q: not self-contained", ext)
		}
	}
	dir := t.TempDir()
	shot := filepath.Join(dir, "shot.png")
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1400,900"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/chromium", append(base, "--screenshot="+shot, "file://"+page)...).CombinedOutput()
	if err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	variance, green := pixelStats(img)
	if variance < 100 {
		t.Errorf("screenshot looks blank: luminance variance %.1f", variance)
	}
	if green == 0 {
		t.Errorf("screenshot has no green probe strip pixels: the timeline did not render")
	}
	dom, err := exec.CommandContext(ctx, "/usr/bin/chromium", append(base, "--dump-dom", "file://"+page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	text := html.UnescapeString(string(dom))
	if !strings.Contains(text, `<svg id="timeline"`) {
		t.Errorf("rendered DOM has no timeline SVG")
	}
	for i, s := range r.Steps {
		if !strings.Contains(text, s.Name) {
			t.Errorf("rendered DOM lacks step %d %q", i+1, s.Name)
		}
	}
}

// pixelStats returns the luminance variance and the count of clearly green
// pixels (the passing probe samples).
func pixelStats(img image.Image) (variance float64, green int) {
	var sum, sumSq float64
	n := 0
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y += 2 {
		for x := bnd.Min.X; x < bnd.Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			r, g, b = r>>8, g>>8, b>>8
			l := 0.299*float64(r) + 0.587*float64(g) + 0.114*float64(b)
			sum += l
			sumSq += l * l
			n++
			if g > 120 && r < 100 && b < 120 {
				green++
			}
		}
	}
	mean := sum / float64(n)
	return sumSq/float64(n) - mean*mean, green
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
