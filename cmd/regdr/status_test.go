package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/status"
)

// TestStatusNothingReachable: with etcd and every agent on closed ports,
// `regdr status` still reports (each site down), exits 3, and gives up
// within its --timeout rather than hanging.
func TestStatusNothingReachable(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, deployment{
		etcd:       "http://" + closedAddr(t),
		tokyo:      closedAddr(t),
		osaka:      closedAddr(t),
		witness:    closedAddr(t),
		secretMode: 0o600,
	})
	// A run that waits out --timeout once (etcd and agents are asked in
	// parallel) takes about 0.5 s; 5 s leaves room for a loaded machine
	// but not for the 2 s default or a dial that never gives up.
	const limit = 5 * time.Second
	tests := []struct {
		name string
		args []string
	}{
		{"table", []string{"status", "--config", path, "--timeout", "500ms"}},
		{"json", []string{"status", "--config", path, "--timeout", "500ms", "-o", "json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r := run(t, tc.args...)
			took := time.Since(start)
			if r.Code != exitNoAccess {
				t.Errorf("exit %d, want %d\nstderr: %s", r.Code, exitNoAccess, r.Stderr)
			}
			if !strings.Contains(r.Stderr, "regdr: neither etcd nor any agent answered") {
				t.Errorf("stderr does not say nothing answered:\n%s", r.Stderr)
			}
			if took > limit {
				t.Errorf("took %s with --timeout 500ms, want under %s", took, limit)
			}
			assertNoSecret(t, r.Stdout, r.Stderr)
			if tc.name == "table" {
				for _, site := range []string{"tokyo", "osaka", "witness"} {
					if !strings.Contains(r.Stdout, site) {
						t.Errorf("table does not show site %s:\n%s", site, r.Stdout)
					}
				}
				return
			}
			var d status.Deployment
			if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
				t.Fatalf("-o json: %v\n%s", err, r.Stdout)
			}
			if d.Deployment != "cli-test" || d.Etcd.Reachable || d.Source != "memberlist" || len(d.Sites) != 3 {
				t.Errorf("-o json: deployment %q, etcd reachable %v, source %q, %d sites; want cli-test, false, memberlist, 3",
					d.Deployment, d.Etcd.Reachable, d.Source, len(d.Sites))
			}
			for _, s := range d.Sites {
				if s.AgentAlive || s.AgentSeen != "down" {
					t.Errorf("site %s: alive %v, seen %q; want down", s.Site, s.AgentAlive, s.AgentSeen)
				}
			}
		})
	}
}

// An unreachable etcd is not a broken chain: verify must say it could not
// check (exit 3), never "broken" (exit 1).
func TestAuditVerifyUnreachable(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, deployment{
		etcd: "http://" + closedAddr(t), tokyo: closedAddr(t), osaka: closedAddr(t), witness: closedAddr(t),
		secretMode: 0o600,
	})
	r := run(t, "audit", "verify", "--config", path, "--timeout", "500ms")
	if r.Code != exitNoAccess {
		t.Fatalf("exit %d, want %d\n%s", r.Code, exitNoAccess, r.Stderr)
	}
	if strings.Contains(r.Stderr, "broken") || !strings.Contains(r.Stderr, "chain not checked") {
		t.Fatalf("stderr should say the chain was not checked:\n%s", r.Stderr)
	}
}
