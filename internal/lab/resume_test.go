package lab_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/failover"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/registry"
)

// TestLabCrashResume kills the executing process after each step in turn
// (switching back and forth) and resumes the operation from its journal;
// every resumed operation must end with the target active, verified, and
// the old site streaming from it.
func TestLabCrashResume(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 1000})
	from, to := "tokyo", "osaka"
	for _, step := range failover.Steps {
		t.Run("crash after "+step, func(t *testing.T) {
			id := planApproved(t, l, to)
			r := executeAs(t, l, "execute", id, "REGDR_TEST_CRASH_AFTER="+step)
			if r.Code != 9 {
				t.Fatalf("execute did not crash after %s: exit %d\n%s%s", step, r.Code, r.Stdout, r.Stderr)
			}
			if r := executeAs(t, l, "execute", id); r.Code != 1 || !strings.Contains(r.Stderr, "resume") {
				t.Fatalf("execute of a started operation: exit %d\n%s", r.Code, r.Stderr)
			}
			r = executeAs(t, l, "resume", id)
			if r.Code != 0 {
				t.Fatalf("resume after %s: exit %d\n%s%s", step, r.Code, r.Stdout, r.Stderr)
			}
			d, _ := statusJSON(t, l)
			if d.ActiveSite != to {
				t.Fatalf("active %s after resuming, want %s", d.ActiveSite, to)
			}
			waitStandby(t, l, from, to)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := registry.Register(ctx, connTo(t, l, to), "resumed-"+strings.ReplaceAll(step, "-", ""), []string{"ns1.example.net."}); err != nil {
				t.Fatalf("write at %s: %v", to, err)
			}
			from, to = to, from
		})
		if t.Failed() {
			return
		}
	}
}
