package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/drills/load"
	"github.com/regdr/regdr/failover"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/replicator/zone"
)

// serialWatch samples the secondary's serial and records any decrease.
type serialWatch struct {
	mu       sync.Mutex
	last     uint32
	backward []string
	samples  int
}

func (w *serialWatch) run(ctx context.Context, l *lab.Lab) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := l.SecondarySerial(ctx)
		if err != nil {
			continue
		}
		w.mu.Lock()
		if w.last != 0 && zone.SerialLess(s, w.last) {
			w.backward = append(w.backward, fmt.Sprintf("%d after %d", s, w.last))
		}
		w.last = s
		w.samples++
		w.mu.Unlock()
	}
}

func TestLabSwitchover(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 2000})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := func(op string) []string { return []string{"REGDR_OPERATOR=" + op} }
	cfg := []string{"--config", l.State.Config}

	// DNSSEC validates from outside before the move (and the verify
	// step checks it after each one).
	if res, err := l.Resolve(ctx, l.State.TLD, dns.TypeSOA); err != nil || !res.Secure {
		t.Fatalf("Unbound before the switchover: %+v %v", res, err)
	}
	var watch serialWatch
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watch.run(wctx, l)

	// Continuous registry writes through the multi-host conninfo, as
	// registry front ends would make them.
	var journal bytes.Buffer
	var jmu sync.Mutex
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan load.Stats, 1)
	go func() {
		st, err := load.Run(lctx, load.Options{ConnString: l.PrimaryConnString(), TLD: l.State.TLD, Rate: 20, Workers: 4,
			Journal: lockedWriter{&jmu, &journal}, Prefix: "sw", OpTimeout: 3 * time.Second})
		if err != nil && lctx.Err() == nil {
			t.Errorf("load: %v", err)
		}
		loadDone <- st
	}()
	time.Sleep(2 * time.Second)

	// A plan is refused while replication is not streaming; on a loaded
	// test machine the walreceiver may still be (re)connecting.
	var r labtest.Result
	eventually(t, 30*time.Second, "a plan with every check passing", func() error {
		r = labtest.Run(t, env("alice"), append([]string{"failover", "plan", "--to", "osaka", "-o", "json"}, cfg...)...)
		if r.Code != 0 {
			return fmt.Errorf("plan: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		return nil
	})
	var p failover.Plan
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, r.Stdout)
	}
	for _, c := range p.Checks {
		if c.Status == failover.Fail && !c.Advisory {
			t.Errorf("check %s failed: %s", c.Name, c.Detail)
		}
		// No backup was verified in this lab: shown, advisory.
		if c.Name == "backup" && (c.Status != failover.Fail || !c.Advisory) {
			t.Errorf("check backup: %+v, want an advisory fail", c)
		}
		// The keys issue's facts: osaka proved it can sign what is
		// published.
		if c.Name == "keys "+l.State.TLD && c.Status != failover.Pass {
			t.Errorf("check %s: %s %s, want pass", c.Name, c.Status, c.Detail)
		}
	}
	id := p.ID
	key := func(op string) []string { return []string{"--key", l.OperatorKey(op), "--operator", op} }

	// Refusals, each audited.
	if r := labtest.Run(t, env("alice"), append(append([]string{"failover", "execute", id}, key("alice")...), cfg...)...); r.Code != 1 || !strings.Contains(r.Stderr, "not approved") {
		t.Fatalf("execute without approval: exit %d\n%s", r.Code, r.Stderr)
	}
	if r := labtest.Run(t, env("alice"), append(append([]string{"failover", "approve", id}, key("alice")...), cfg...)...); r.Code != 1 || !strings.Contains(r.Stderr, "own request") {
		t.Fatalf("self-approval: exit %d\n%s", r.Code, r.Stderr)
	}
	if r := labtest.Run(t, env("bob"), append([]string{"failover", "approve", id, "--operator", "bob", "--key", l.OperatorKey("alice")}, cfg...)...); r.Code != 1 {
		t.Fatalf("approval signed with another operator's key: exit %d\n%s", r.Code, r.Stderr)
	}
	if r := labtest.Run(t, env("bob"), append(append([]string{"failover", "approve", id}, key("bob")...), cfg...)...); r.Code != 0 {
		t.Fatalf("approve: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := labtest.Run(t, env("bob"), append(append([]string{"failover", "execute", id}, key("bob")...), cfg...)...); r.Code != 1 || !strings.Contains(r.Stderr, "may not also execute") {
		t.Fatalf("execute by the approver: exit %d\n%s", r.Code, r.Stderr)
	}
	start := time.Now()
	r = labtest.Run(t, env("alice"), append(append([]string{"failover", "execute", id}, key("alice")...), cfg...)...)
	took := time.Since(start)
	t.Logf("execute (%s):\n%s%s", took.Round(time.Millisecond), r.Stderr, r.Stdout)
	if r.Code != 0 || !strings.Contains(r.Stdout, "DNSSEC validates") {
		t.Fatalf("execute: exit %d (or DNSSEC not validated from outside)", r.Code)
	}

	// The new primary takes writes; the old one refuses them.
	osaka, err := pgx.Connect(ctx, l.SiteConnString("osaka"))
	if err != nil {
		t.Fatal(err)
	}
	defer osaka.Close(context.Background())
	if _, err := registry.Register(ctx, osaka, "after-switchover", []string{"ns1.example.net."}); err != nil {
		t.Fatalf("write at osaka after the switchover: %v", err)
	}
	// The old primary takes no write: it is fenced, or already being
	// rejoined by its agent (then it does not even accept a connection).
	if tokyo, err := pgx.Connect(ctx, l.SiteConnString("tokyo")); err == nil {
		_, werr := registry.Register(ctx, tokyo, "split-brain", []string{"ns1.example.net."})
		tokyo.Close(context.Background())
		if werr == nil {
			t.Fatal("tokyo's fenced database accepted a write after the switchover")
		}
	}
	time.Sleep(2 * time.Second)
	stopLoad()
	st := <-loadDone

	// Zero acknowledged writes lost.
	jmu.Lock()
	recs, err := load.ParseJournal(bytes.NewReader(journal.Bytes()))
	jmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	v, err := load.Check(ctx, osaka, st.Prefix, recs.Records)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load: %d acknowledged, %d present at osaka, lost %v, unexpected %v", v.Acked, v.Present, v.Lost, v.Unexpected)
	if !v.OK() || v.Acked == 0 {
		t.Fatalf("switchover lost writes: %+v", v)
	}
	// The registry's new writes reach the secondary through osaka.
	eventually(t, 20*time.Second, "the secondary to serve a delegation written at osaka", func() error {
		if !hasDelegation(l, "after-switchover") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	stopWatch()
	watch.mu.Lock()
	defer watch.mu.Unlock()
	if len(watch.backward) > 0 || watch.samples < 10 {
		t.Fatalf("secondary serial went backwards %v (%d samples)", watch.backward, watch.samples)
	}
	d, _ := statusJSON(t, l)
	if d.ActiveSite != "osaka" || d.Epoch != 2 {
		t.Fatalf("status: active %s epoch %d", d.ActiveSite, d.Epoch)
	}

	// tokyo rejoins by itself as osaka's standby (pg_rewind), with an
	// empty salvage file: a switchover loses nothing.
	waitStandby(t, l, "tokyo", "osaka")
	salvage, _ := filepath.Glob(filepath.Join(l.State.Dir, "tokyo", "salvage", "salvage-*.jsonl"))
	if len(salvage) != 1 {
		t.Fatalf("salvage files at tokyo: %v", salvage)
	}
	if b, _ := os.ReadFile(salvage[0]); !strings.Contains(string(b), `"rows":0`) {
		t.Fatalf("a switchover salvaged writes:\n%s", b)
	}

	// And back, now with the validating resolver checked from outside.
	id2 := planApproved(t, l, "tokyo")
	r = executeAs(t, l, "execute", id2)
	t.Logf("switch back:\n%s", r.Stdout)
	if r.Code != 0 || !strings.Contains(r.Stdout, "DNSSEC validates") {
		t.Fatalf("switch back: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	waitStandby(t, l, "osaka", "tokyo")
	tokyo2, err := pgx.Connect(ctx, l.SiteConnString("tokyo"))
	if err != nil {
		t.Fatal(err)
	}
	defer tokyo2.Close(context.Background())
	if _, err := registry.Register(ctx, tokyo2, "back-home", []string{"ns1.example.net."}); err != nil {
		t.Fatalf("write at tokyo after switching back: %v", err)
	}

	// Reseed: never the active site; the standby is rebuilt and streams.
	if r := labtest.Run(t, nil, append([]string{"db", "reseed", "--site", "tokyo"}, cfg...)...); r.Code != 1 || !strings.Contains(r.Stderr, "active site") {
		t.Fatalf("reseed of the active site: exit %d\n%s", r.Code, r.Stderr)
	}
	r = labtest.Run(t, nil, append([]string{"db", "reseed", "--site", "osaka"}, cfg...)...)
	t.Logf("reseed osaka: %s", strings.TrimSpace(r.Stdout))
	if r.Code != 0 {
		t.Fatalf("reseed osaka: exit %d\n%s", r.Code, r.Stderr)
	}
	waitStandby(t, l, "osaka", "tokyo")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// planApproved plans a switchover to `to` as alice, approved by bob, and
// returns the plan id.
func planApproved(t *testing.T, l *lab.Lab, to string) string {
	t.Helper()
	cfg := []string{"--config", l.State.Config}
	var r labtest.Result
	eventually(t, 30*time.Second, "a plan to "+to+" with every check passing", func() error {
		r = labtest.Run(t, []string{"REGDR_OPERATOR=alice"}, append([]string{"failover", "plan", "--to", to, "-o", "json"}, cfg...)...)
		if r.Code != 0 {
			return fmt.Errorf("plan: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		return nil
	})
	var p failover.Plan
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, r.Stdout)
	}
	if r := labtest.Run(t, nil, append([]string{"failover", "approve", p.ID, "--operator", "bob", "--key", l.OperatorKey("bob")}, cfg...)...); r.Code != 0 {
		t.Fatalf("approve: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	return p.ID
}

// executeAs runs `failover execute|resume` as alice.
func executeAs(t *testing.T, l *lab.Lab, verb, id string, env ...string) labtest.Result {
	t.Helper()
	return labtest.Run(t, env, "failover", verb, id, "--operator", "alice", "--key", l.OperatorKey("alice"), "--config", l.State.Config)
}

// waitStandby waits until site's database streams from the active site
// (pg_stat_replication there, never a standby read).
func waitStandby(t *testing.T, l *lab.Lab, site, from string) {
	t.Helper()
	eventually(t, 60*time.Second, site+" to stream from "+from, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, l.SiteConnString(from))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", site).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%s not streaming from %s", site, from)
		}
		return nil
	})
}

// connTo connects to site's registry database for the test's duration.
func connTo(t *testing.T, l *lab.Lab, site string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, l.SiteConnString(site))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
