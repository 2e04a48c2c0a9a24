package lab_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/pglab"
)

// TestLabEtcdQuorumLoss loses tokyo together with the witness: two of
// three etcd members are gone, so nothing can move the active-site
// record. `regdr etcd recover` restarts osaka's member alone, and the
// disaster failover then runs as usual.
func TestLabEtcdQuorumLoss(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 300, EtcdMembers: 3})
	cfg := []string{"--config", l.State.Config}
	for _, name := range []string{"agent-tokyo", "etcd-tokyo", "etcd-witness"} {
		p, _ := l.State.Proc(name)
		if err := lab.Kill(p); err != nil {
			t.Fatal(err)
		}
	}
	pg := l.State.Postgres[0]
	if err := (&pglab.Cluster{Name: "tokyo", DataDir: pg.DataDir, Dir: pg.Dir, BinDir: pg.BinDir}).Kill(); err != nil {
		t.Fatal(err)
	}
	r := labtest.Run(t, []string{"REGDR_OPERATOR=alice"}, append([]string{"failover", "plan", "--to", "osaka", "--mode", "disaster"}, cfg...)...)
	if r.Code == 0 {
		t.Fatalf("a plan without etcd quorum succeeded:\n%s", r.Stdout)
	}
	r = labtest.Run(t, []string{"REGDR_OPERATOR=carol"}, "etcd", "recover", "--member", "osaka", "--lab-dir", l.State.Dir)
	if r.Code != 0 {
		t.Fatalf("etcd recover: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var id string
	eventually(t, 30*time.Second, "a disaster plan after the recovery", func() error {
		r = labtest.Run(t, []string{"REGDR_OPERATOR=alice"}, append([]string{"failover", "plan", "--to", "osaka", "--mode", "disaster"}, cfg...)...)
		if r.Code != 0 {
			return fmt.Errorf("plan: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		id = strings.TrimSuffix(strings.Fields(r.Stdout)[1], ":")
		return nil
	})
	if r := labtest.Run(t, nil, append([]string{"failover", "approve", id, "--operator", "bob", "--key", l.OperatorKey("bob")}, cfg...)...); r.Code != 0 {
		t.Fatalf("approve: %d %s", r.Code, r.Stderr)
	}
	r = labtest.Run(t, nil, append([]string{"failover", "execute", id, "--accept-data-loss", "--operator", "alice", "--key", l.OperatorKey("alice")}, cfg...)...)
	if r.Code != 0 {
		t.Fatalf("execute: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	d, _ := statusJSON(t, l)
	if d.ActiveSite != "osaka" {
		t.Fatalf("active %s after the failover", d.ActiveSite)
	}
	r = labtest.Run(t, nil, append([]string{"audit", "list"}, cfg...)...)
	if !strings.Contains(r.Stdout, "etcd.recover") {
		t.Errorf("audit log lacks etcd.recover:\n%s", r.Stdout)
	}
}
