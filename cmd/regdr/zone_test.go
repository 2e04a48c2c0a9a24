package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regdr/regdr/replicator/gates"
)

// The gates' own incident corpus, through the command line: exit codes,
// the failing gates in JSON, and the names in the table.
func TestZoneCheck(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "..", "replicator", "gates", "testdata", "incidents")
	good := filepath.Join(dir, "good.zone")
	tests := []struct {
		file     string
		extra    []string
		code     int
		failing  []string
		mentions string
	}{
		{"good.zone", nil, exitOK, nil, "PASS"},
		{"doubled-3.zone", []string{"--previous", good}, exitFailed, []string{"origin"}, "missing trailing dot?"},
		{"truncated.zone", []string{"--previous", good, "--expect-delegations", "160"}, exitFailed, []string{"budget", "reconcile"}, "removed"},
		{"empty.zone", []string{"--previous", good}, exitFailed, []string{"apex", "budget"}, "BLOCKED"},
		{"serial-regression.zone", []string{"--previous", good}, exitFailed, []string{"serial"}, "serial"},
		{"missing-glue.zone", []string{"--previous", good}, exitFailed, []string{"apex"}, "glue"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"zone", "check", filepath.Join(dir, tc.file), "--origin", "test."}, tc.extra...)
			r := run(t, append(args, "-o", "json")...)
			if r.Code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.Code, tc.code, r.Stdout, r.Stderr)
			}
			var rep gates.Report
			if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, r.Stdout)
			}
			failed := rep.Failed()
			slices.Sort(failed)
			if !slices.Equal(failed, tc.failing) && !(len(failed) == 0 && len(tc.failing) == 0) {
				t.Fatalf("failing gates %v, want %v", failed, tc.failing)
			}
			r = run(t, args...)
			if !strings.Contains(r.Stdout, tc.mentions) {
				t.Fatalf("table output lacks %q:\n%s", tc.mentions, r.Stdout)
			}
		})
	}
	for name, args := range map[string][]string{
		"no origin":      {"zone", "check", good},
		"origin no dot":  {"zone", "check", good, "--origin", "test"},
		"missing file":   {"zone", "check", filepath.Join(dir, "nope.zone"), "--origin", "test."},
		"bad --at":       {"zone", "check", good, "--origin", "test.", "--at", "tomorrow"},
		"bad --previous": {"zone", "check", good, "--origin", "test.", "--previous", filepath.Join(dir, "nope.zone")},
	} {
		if r := run(t, args...); r.Code != exitUsage {
			t.Errorf("%s: exit %d, want %d\n%s", name, r.Code, exitUsage, r.Stderr)
		}
	}
}
