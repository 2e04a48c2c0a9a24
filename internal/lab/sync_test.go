package lab_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/registry"
)

// TestLabSynchronous: the active agent makes osaka synchronous, degrades
// to asynchronous when osaka's database is gone for longer than the rule
// allows (writes at tokyo go on), and restores synchronous replication
// when osaka streams again.
func TestLabSynchronous(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 300, Synchronous: true})
	tokyo, _ := l.Cfg.Site("tokyo")
	setting := func() (string, string) {
		st := agentStatus(t, tokyo.AgentAddr)
		if st.Sync == nil {
			return "", ""
		}
		return st.Sync.Setting, st.Sync.Action
	}
	eventually(t, 20*time.Second, "osaka synchronous", func() error {
		if s, _ := setting(); s == "" {
			return fmt.Errorf("synchronous_standby_names empty")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := registry.Register(ctx, connTo(t, l, "tokyo"), "sync-1", []string{"ns1.example.net."}); err != nil {
		t.Fatal(err)
	}
	pg := l.State.Postgres[1]
	osaka := &pglab.Cluster{Name: "osaka", DataDir: pg.DataDir, Dir: pg.Dir, BinDir: pg.BinDir, Host: pg.Host, Port: pg.Port, LogFile: pg.LogFile}
	if err := osaka.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 30*time.Second, "degraded to asynchronous", func() error {
		if s, a := setting(); s != "" {
			return fmt.Errorf("setting %q (last action %s)", s, a)
		}
		return nil
	})
	t.Logf("degraded %s after osaka stopped (rule: 3s)", took.Round(100*time.Millisecond))
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := registry.Register(wctx, connTo(t, l, "tokyo"), "sync-2", []string{"ns1.example.net."}); err != nil {
		t.Fatalf("write at tokyo while degraded: %v", err)
	}
	if err := osaka.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "synchronous again", func() error {
		if s, _ := setting(); s == "" {
			return fmt.Errorf("still asynchronous")
		}
		return nil
	})
}
