package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/drills/load"
	"github.com/regdr/regdr/failover"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/replicator/pgctl"
)

// TestLabDisasterFailover loses tokyo (database and agent killed) with
// acknowledged writes osaka never received, fails over to osaka, brings
// tokyo back and checks that the salvage file tokyo's agent writes at
// rejoin lists exactly the acknowledged writes missing at osaka.
func TestLabDisasterFailover(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 2000})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := []string{"--config", l.State.Config}

	var journal bytes.Buffer
	var jmu sync.Mutex
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan load.Stats, 1)
	go func() {
		st, _ := load.Run(lctx, load.Options{ConnString: l.SiteConnString("tokyo"), TLD: l.State.TLD, Rate: 30, Workers: 2,
			Journal: lockedWriter{&jmu, &journal}, Prefix: "dz", OpTimeout: time.Second})
		loadDone <- st
	}()
	time.Sleep(time.Second)

	// Cut osaka's replication: it stops receiving while tokyo goes on
	// acknowledging writes (asynchronous replication's loss window).
	osaka, err := pgx.Connect(ctx, l.SiteConnString("osaka"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 connect_timeout=1'", "SELECT pg_reload_conf()"} {
		if _, err := osaka.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	osaka.Close(ctx)
	time.Sleep(2 * time.Second)

	// tokyo is lost: its database and its agent die at once.
	pgState := l.State.Postgres[0]
	tk := &pglab.Cluster{Name: "tokyo", DataDir: pgState.DataDir, Dir: pgState.Dir, BinDir: pgState.BinDir, Host: pgState.Host, Port: pgState.Port, LogFile: pgState.LogFile}
	p, _ := l.State.Proc("agent-tokyo")
	if err := lab.Kill(p); err != nil {
		t.Fatal(err)
	}
	if err := tk.Kill(); err != nil {
		t.Fatal(err)
	}
	stopLoad()
	st := <-loadDone

	// The plan: the source checks fail (that is the disaster), the
	// target's pass, and the loss window is stated.
	var r labtest.Result
	var plan failover.Plan
	eventually(t, 30*time.Second, "a disaster plan", func() error {
		r = labtest.Run(t, []string{"REGDR_OPERATOR=alice"}, append([]string{"failover", "plan", "--to", "osaka", "--mode", "disaster", "-o", "json"}, cfg...)...)
		if err := json.Unmarshal([]byte(r.Stdout), &plan); err != nil || r.Code != 0 {
			return fmt.Errorf("plan: exit %d %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
		}
		return nil
	})
	if r := labtest.Run(t, nil, append([]string{"failover", "approve", plan.ID, "--operator", "bob", "--key", l.OperatorKey("bob")}, cfg...)...); r.Code != 0 {
		t.Fatalf("approve: %d %s", r.Code, r.Stderr)
	}
	if r := executeAs(t, l, "execute", plan.ID); r.Code != 1 || !strings.Contains(r.Stderr, "--accept-data-loss") {
		t.Fatalf("disaster without --accept-data-loss: exit %d\n%s", r.Code, r.Stderr)
	}
	r = labtest.Run(t, nil, append([]string{"failover", "execute", plan.ID, "--accept-data-loss", "--operator", "alice", "--key", l.OperatorKey("alice")}, cfg...)...)
	t.Logf("disaster execute:\n%s%s", r.Stdout, r.Stderr)
	if r.Code != 0 {
		t.Fatalf("execute: exit %d", r.Code)
	}

	// What osaka lacks of tokyo's acknowledged writes.
	jmu.Lock()
	recs, err := load.ParseJournal(bytes.NewReader(journal.Bytes()))
	jmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	osaka, err = pgx.Connect(ctx, l.SiteConnString("osaka"))
	if err != nil {
		t.Fatal(err)
	}
	defer osaka.Close(context.Background())
	v, err := load.Check(ctx, osaka, st.Prefix, recs.Records)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load: %d acknowledged, lost at osaka %d", v.Acked, len(v.Lost))
	if len(v.Lost) == 0 {
		t.Fatal("the test made no acknowledged writes that osaka lacks; nothing to salvage")
	}

	// tokyo comes back: its agent fences and rejoins it as a standby,
	// salvaging first.
	if err := l.StartAgent(ctx, "tokyo"); err != nil {
		t.Fatal(err)
	}
	waitStandby(t, l, "tokyo", "osaka")
	files, _ := filepath.Glob(filepath.Join(l.State.Dir, "tokyo", "salvage", "salvage-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("salvage files: %v", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, rows, err := pgctl.ReadSalvage(f)
	if err != nil {
		t.Fatal(err)
	}
	var salvaged []int64
	for _, row := range rows {
		if row.Domain != nil && strings.HasPrefix(*row.Domain, st.Prefix+"-") {
			salvaged = append(salvaged, row.ID)
		}
	}
	lost := slices.Clone(v.Lost)
	slices.Sort(lost)
	slices.Sort(salvaged)
	// Uncertain writes (commit in flight when tokyo died) may be in the
	// salvage file too: committed there, never acknowledged.
	var extra []int64
	for _, id := range salvaged {
		if !slices.Contains(lost, id) && !slices.Contains(v.UncertainKept, id) && !slices.Contains(v.UncertainGone, id) {
			extra = append(extra, id)
		}
	}
	for _, id := range lost {
		if !slices.Contains(salvaged, id) {
			t.Errorf("acknowledged write %d lost at osaka is not in the salvage file", id)
		}
	}
	if len(extra) > 0 {
		t.Errorf("salvage file lists writes that were not lost: %v", extra)
	}
	t.Logf("salvage file %s: %d rows of this load, %d acknowledged writes lost", filepath.Base(files[0]), len(salvaged), len(lost))
}
