package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
)

// TestBackupCLILab takes a pg_basebackup and a pgBackRest backup of the
// lab's registry with the CLI and restore-tests both at osaka (the
// standby, the default verify site), including the zone reconciliation
// against osaka's zone store; then the usage and unreachable exits.
func TestBackupCLILab(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 500})
	cfg := l.State.Config

	for _, typ := range []string{backup.TypeBasebackup, backup.TypePgBackRest} {
		r := run(t, "backup", "take", "--config", cfg, "--type", typ, "-o", "json")
		if r.Code != 0 {
			t.Fatalf("backup take --type %s: exit %d\n%s%s", typ, r.Code, r.Stdout, r.Stderr)
		}
		var b backup.Backup
		if err := json.Unmarshal([]byte(r.Stdout), &b); err != nil {
			t.Fatalf("take output: %v\n%s", err, r.Stdout)
		}
		if b.Site != "tokyo" || b.Type != typ || b.Facts.Domains != 500 {
			t.Errorf("took %+v, want a %s backup of tokyo with 500 domains", b, typ)
		}
		r = run(t, "backup", "verify", "--config", cfg, "--backup", b.ID, "--operator", "alice")
		t.Logf("verify %s:\n%s%s", typ, r.Stdout, r.Stderr)
		if r.Code != 0 {
			t.Fatalf("backup verify %s: exit %d", b.ID, r.Code)
		}
		for _, want := range []string{"at site osaka", "zone      passed", "keys      passed", "500 delegations match", "result: PASSED"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("verify output lacks %q", want)
			}
		}
	}

	r := run(t, "backup", "list", "--config", cfg, "-o", "json")
	var rows []struct {
		ID               string               `json:"id"`
		LastVerification *backup.Verification `json:"last_verification"`
	}
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &rows) != nil || len(rows) != 2 {
		t.Fatalf("backup list: exit %d, %d rows\n%s%s", r.Code, len(rows), r.Stdout, r.Stderr)
	}
	for _, row := range rows {
		if row.LastVerification == nil || row.LastVerification.Result != backup.StatusPassed {
			t.Errorf("backup %s: last verification %+v, want passed", row.ID, row.LastVerification)
		}
	}
	r = run(t, "audit", "list", "--config", cfg, "-o", "json")
	if !strings.Contains(r.Stdout, `"backup.verify"`) || !strings.Contains(r.Stdout, `"alice"`) {
		t.Errorf("audit log has no backup.verify entry by alice:\n%s", r.Stdout)
	}

	if r := run(t, "backup", "verify", "--config", cfg, "--backup", "no-such-backup"); r.Code != exitUsage {
		t.Errorf("verify of an unknown backup: exit %d, want %d\n%s", r.Code, exitUsage, r.Stderr)
	}
	if r := run(t, "backup", "take", "--config", cfg, "--type", "tape"); r.Code != exitUsage {
		t.Errorf("take --type tape: exit %d, want %d", r.Code, exitUsage)
	}
	// A config whose etcd is gone: exit 3.
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dead := strings.ReplaceAll(string(data), l.Cfg.Etcd.Endpoints[0], "http://127.0.0.1:1")
	deadCfg := filepath.Join(filepath.Dir(cfg), "dead-etcd.yaml")
	if err := os.WriteFile(deadCfg, []byte(dead), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "backup", "list", "--config", deadCfg); r.Code != exitNoAccess {
		t.Errorf("list with etcd unreachable: exit %d, want %d\n%s", r.Code, exitNoAccess, r.Stderr)
	}
}
