package lab_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/registry"
)

// TestLabSplitBrain cuts tokyo's agent off from etcd (a real TCP cut)
// while tokyo's database keeps running: the agent must fence its database
// within the lease, and after osaka is promoted tokyo must never accept a
// write again, also once the cut heals, until it has rejoined as a
// standby.
func TestLabSplitBrain(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 500})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := []string{"--config", l.State.Config}
	lease := l.Cfg.Agent.LeaseTTL.Duration

	etcd := strings.TrimPrefix(l.Cfg.Etcd.Endpoints[0], "http://")
	proxy := labtest.NewProxy(t, "127.0.10.1", etcd)
	p, _ := l.State.Proc("agent-tokyo")
	if err := lab.Kill(p); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent(ctx, "tokyo", "--etcd-endpoints", "http://"+proxy.Addr()); err != nil {
		t.Fatal(err)
	}
	tokyo, _ := l.Cfg.Site("tokyo")
	eventually(t, 30*time.Second, "tokyo's agent active through the proxy", func() error {
		if st := agentStatus(t, tokyo.AgentAddr); st.Role != "active" || !st.Etcd.Reachable {
			return fmt.Errorf("role %q etcd %+v", st.Role, st.Etcd)
		}
		return nil
	})

	// A client writing to tokyo directly, as a registry front end that
	// still points there would.
	var mu sync.Mutex
	var accepted []time.Time
	wctx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; wctx.Err() == nil; i++ {
			c, err := pgx.Connect(wctx, l.SiteConnString("tokyo"))
			if err == nil {
				_, err = registry.Register(wctx, c, fmt.Sprintf("sb-%d", i), []string{"ns1.example.net."})
				c.Close(context.Background())
				if err == nil {
					mu.Lock()
					accepted = append(accepted, time.Now())
					mu.Unlock()
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)

	proxy.Cut()
	cut := time.Now()
	took := eventually(t, lease+10*time.Second, "tokyo's agent to fence its database", func() error {
		if st := agentStatus(t, tokyo.AgentAddr); st.Fence == nil || !st.Fence.Fenced {
			return fmt.Errorf("not fenced")
		}
		return nil
	})
	fencedAt := time.Now()
	t.Logf("tokyo fenced %s after the cut (lease %s)", took.Round(100*time.Millisecond), lease)
	if took > lease+3*time.Second {
		t.Errorf("fenced %s after the cut, lease is %s", took, lease)
	}

	// Disaster failover to osaka while tokyo is cut off.
	id := ""
	eventually(t, 30*time.Second, "a disaster plan", func() error {
		r := labtest.Run(t, []string{"REGDR_OPERATOR=alice"}, append([]string{"failover", "plan", "--to", "osaka", "--mode", "disaster"}, cfg...)...)
		if r.Code != 0 {
			return fmt.Errorf("plan: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		id = strings.Fields(r.Stdout)[1]
		id = strings.TrimSuffix(id, ":")
		return nil
	})
	if r := labtest.Run(t, nil, append([]string{"failover", "approve", id, "--operator", "bob", "--key", l.OperatorKey("bob")}, cfg...)...); r.Code != 0 {
		t.Fatalf("approve: %d %s", r.Code, r.Stderr)
	}
	if r := labtest.Run(t, nil, append([]string{"failover", "execute", id, "--accept-data-loss", "--operator", "alice", "--key", l.OperatorKey("alice")}, cfg...)...); r.Code != 0 {
		t.Fatalf("execute: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The cut heals: tokyo sees the higher epoch, stays fenced, rejoins.
	proxy.Heal()
	waitStandby(t, l, "tokyo", "osaka")
	stopWriter()
	<-writerDone
	mu.Lock()
	defer mu.Unlock()
	var late []string
	for _, at := range accepted {
		if at.After(fencedAt) {
			late = append(late, at.Sub(cut).Round(time.Millisecond).String())
		}
	}
	if len(late) > 0 {
		t.Fatalf("tokyo accepted %d writes after it was fenced (at %v after the cut)", len(late), late)
	}
	if len(accepted) == 0 {
		t.Fatal("the writer never got a write into tokyo before the cut: the test proves nothing")
	}
	if _, err := registry.Register(ctx, connTo(t, l, "osaka"), "after-split", []string{"ns1.example.net."}); err != nil {
		t.Fatalf("write at osaka: %v", err)
	}
}
