// Package labtest is the integration-test harness: it builds the regdr
// binary once per test process, brings a lab up for a test and tears it down
// in t.Cleanup, checking that nothing is left running.
package labtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/lab"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns a regdr binary: $REGDR_BIN (set by `make test`), or one
// built from this checkout into a temporary directory.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("REGDR_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("REGDR_BIN=%s: %v", b, err)
		}
		return b
	}
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "regdr-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "regdr")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/regdr")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New("go build ./cmd/regdr: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Dir makes a lab directory the postgres user can traverse (t.TempDir's
// parents are 0700) and removes it after the test.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "regdr-lab-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Up brings a lab up for the test and registers its teardown. The teardown
// fails the test if any lab process or port survives `Down`.
func Up(t testing.TB, o lab.Options) *lab.Lab {
	t.Helper()
	if o.Dir == "" {
		o.Dir = Dir(t)
	}
	if o.Bin == "" {
		o.Bin = Binary(t)
	}
	if o.Domains == 0 {
		o.Domains = 2000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	o.Progress = &progress
	l, err := lab.Up(ctx, o)
	if err != nil && strings.Contains(err.Error(), "exited") {
		// The lab picks free ports by binding and closing them; another
		// lab starting on this machine at the same moment (tests run in
		// parallel packages) can take one first. Up cleaned up after
		// itself; one more try on fresh ports.
		t.Logf("lab up failed, retrying once on fresh ports: %v", err)
		progress.Reset()
		o.Fresh = true
		l, err = lab.Up(ctx, o)
	}
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, o.Dir)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// CLI commands the test ran (etcd recover, lab follow) may have
		// changed the lab's processes: tear down what the lab records now.
		if fresh, err := lab.Open(o.Dir); err == nil {
			l = fresh
		}
		if err := l.Down(ctx); err != nil {
			t.Errorf("lab down: %v", err)
		}
		for _, p := range l.Parts() {
			if p.Running {
				t.Errorf("lab down left %s (pid %d) running", p.Name, p.Pid)
			}
		}
	})
	return l
}

// Result is one CLI run.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the regdr binary with args and returns its output and exit code.
func Run(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := Result{Stdout: so.String(), Stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("run regdr %v: %v", args, err)
	}
	return r
}

// logTails shows the end of every lab log, so a failed test says what the
// lab's processes were doing.
func logTails(t testing.TB, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("--- %s (last %d lines)\n%s", filepath.Base(f), len(lines), strings.Join(lines, "\n"))
	}
}
