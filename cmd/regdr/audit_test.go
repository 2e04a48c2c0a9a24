package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
)

// auditVerifyJSON is `regdr audit verify -o json`.
type auditVerifyJSON struct {
	OK     bool         `json:"ok"`
	Report audit.Report `json:"report"`
	Error  string       `json:"error"`
}

func decodeJSON(t *testing.T, what, stdout string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, stdout)
	}
}

// TestAudit runs `audit verify` and `audit list` against a real embedded
// etcd holding a log written by internal/audit, then removes a middle
// entry the way an intruder with etcd access would.
func TestAudit(t *testing.T) {
	t.Parallel()
	eps, cli := etcdtest.Start(t)
	path := writeConfig(t, deployment{
		etcd:       eps[0],
		tokyo:      closedAddr(t),
		osaka:      closedAddr(t),
		witness:    closedAddr(t),
		secretMode: 0o600,
	})
	// The prefix testdata/deployment.yaml sets.
	keys := store.Keys{Prefix: "/regdr-cli-test"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := []string{"--config", path}

	// The empty log is intact.
	r := run(t, append([]string{"audit", "verify"}, cfg...)...)
	if r.Code != exitOK || r.Stdout != "audit chain intact: 0 entries\n" {
		t.Fatalf("empty log: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = run(t, append([]string{"audit", "list", "-o", "json"}, cfg...)...)
	if r.Code != exitOK || strings.TrimSpace(r.Stdout) != "[]" {
		t.Fatalf("empty log list -o json: exit %d, stdout %q (want []), stderr %q", r.Code, r.Stdout, r.Stderr)
	}

	l := audit.New(cli, keys)
	actions := []string{"lab.up", "freeze", "gate.override", "failover.promote", "unfreeze"}
	var appended []audit.Entry
	for i, a := range actions {
		e, err := l.Append(ctx, audit.Entry{
			Who: "alice", Action: a, Target: "test.", Result: "ok",
			Detail: map[string]string{"op": fmt.Sprintf("op-%d", i+1)},
		})
		if err != nil {
			t.Fatal(err)
		}
		appended = append(appended, e)
	}

	r = run(t, append([]string{"audit", "verify"}, cfg...)...)
	if r.Code != exitOK || r.Stdout != "audit chain intact: 5 entries\n" {
		t.Errorf("verify: exit %d, stdout %q, stderr %q; want exit 0 and intact: 5 entries", r.Code, r.Stdout, r.Stderr)
	}
	r = run(t, append([]string{"audit", "verify", "-o", "json"}, cfg...)...)
	var vj auditVerifyJSON
	decodeJSON(t, "verify -o json", r.Stdout, &vj)
	if r.Code != exitOK || !vj.OK || !vj.Report.OK || vj.Report.Entries != 5 || vj.Report.Head.Seq != 5 {
		t.Errorf("verify -o json: exit %d, %+v; want ok with 5 entries", r.Code, vj)
	}

	r = run(t, append([]string{"audit", "list", "-o", "json"}, cfg...)...)
	if r.Code != exitOK {
		t.Fatalf("list -o json: exit %d, stderr %s", r.Code, r.Stderr)
	}
	var listed []audit.Entry
	decodeJSON(t, "list -o json", r.Stdout, &listed)
	if len(listed) != len(appended) {
		t.Fatalf("list -o json: %d entries, want %d", len(listed), len(appended))
	}
	for i, e := range listed {
		w := appended[i]
		if e.Seq != w.Seq || e.Action != w.Action || e.Hash != w.Hash || e.Prev != w.Prev || !e.Time.Equal(w.Time) || e.Detail["op"] != w.Detail["op"] {
			t.Errorf("list -o json entry %d: got %+v, want %+v", i, e, w)
		}
	}

	r = run(t, append([]string{"audit", "list", "-o", "json", "--from", "2", "--limit", "2"}, cfg...)...)
	var page []audit.Entry
	decodeJSON(t, "list --from 2 --limit 2", r.Stdout, &page)
	if r.Code != exitOK || len(page) != 2 || page[0].Seq != 2 || page[1].Seq != 3 {
		t.Errorf("list --from 2 --limit 2: exit %d, %d entries %+v; want seqs 2, 3", r.Code, len(page), page)
	}

	r = run(t, append([]string{"audit", "list"}, cfg...)...)
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	if r.Code != exitOK || len(lines) != 1+len(actions) || !strings.HasPrefix(lines[0], "SEQ") {
		t.Fatalf("list table: exit %d, want a header and %d rows:\n%s", r.Code, len(actions), r.Stdout)
	}
	for i, a := range actions {
		f := strings.Fields(lines[i+1])
		if len(f) < 6 || f[0] != fmt.Sprint(i+1) || f[3] != a || !strings.Contains(lines[i+1], fmt.Sprintf("op=op-%d", i+1)) {
			t.Errorf("list table row %d: %q; want seq %d action %s", i+1, lines[i+1], i+1, a)
		}
	}

	// Remove seq 3 behind the log's back.
	if _, err := cli.Delete(ctx, keys.AuditEntry(3)); err != nil {
		t.Fatal(err)
	}
	r = run(t, append([]string{"audit", "verify"}, cfg...)...)
	if r.Code != exitFailed {
		t.Errorf("verify after delete: exit %d, want %d", r.Code, exitFailed)
	}
	if !strings.Contains(r.Stderr, "regdr: audit chain broken: ") || !strings.Contains(r.Stderr, "seq 3: entry missing") {
		t.Errorf("verify after delete: stderr does not name seq 3:\n%s", r.Stderr)
	}
	if strings.Contains(r.Stdout, "intact") {
		t.Errorf("verify after delete says intact:\n%s", r.Stdout)
	}
	r = run(t, append([]string{"audit", "verify", "-o", "json"}, cfg...)...)
	vj = auditVerifyJSON{}
	decodeJSON(t, "verify -o json after delete", r.Stdout, &vj)
	if r.Code != exitFailed || vj.OK || vj.Report.OK || vj.Report.BadSeq != 3 || !strings.Contains(vj.Error, "seq 3") {
		t.Errorf("verify -o json after delete: exit %d, %+v; want not ok, bad_seq 3", r.Code, vj)
	}
}
