package overview

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/status"
)

var update = flag.Bool("update", false, "rewrite golden files")

func i64(v int64) *int64     { return &v }
func f64(v float64) *float64 { return &v }

func TestRenderGolden(t *testing.T) {
	since := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	cases := map[string]status.Deployment{
		"healthy": {
			Deployment: "lab", Source: "etcd", ActiveSite: "tokyo", Epoch: 1, Since: since,
			Etcd: status.EtcdView{Reachable: true},
			Sites: []status.SiteRow{
				{Site: "tokyo", Role: "active", AgentAlive: true, AgentSeen: "http", Health: "ok", PGRole: "primary", Timeline: 1, LSN: "0/3000148", Serials: map[string]uint32{"test.": 1795000000}},
				{Site: "osaka", Role: "standby", AgentAlive: true, AgentSeen: "http", Health: "ok", PGRole: "standby", Timeline: 1, LSN: "0/3000148", LagBytes: i64(0), LagSeconds: f64(0), Serials: map[string]uint32{"test.": 1795000000}},
				{Site: "witness", Role: "witness", AgentAlive: true, AgentSeen: "http", Health: "ok"},
			},
		},
		"etcd-lost": {
			Deployment: "lab", Source: "memberlist", ActiveSite: "tokyo", Epoch: 1,
			Etcd: status.EtcdView{Error: "context deadline exceeded"},
			Sites: []status.SiteRow{
				{Site: "tokyo", Role: "active", AgentSeen: "down", Problems: []string{"agent at 127.0.10.1:4000 did not answer: connection refused"}},
				{Site: "osaka", Role: "standby", AgentAlive: true, AgentSeen: "http", Health: "degraded", PGRole: "standby", Timeline: 1, LSN: "0/3000148", Problems: []string{"etcd unreachable: context deadline exceeded"}},
			},
			Notes: []string{"etcd unreachable (context deadline exceeded): roles are what the agents last confirmed, as gossiped"},
		},
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Render(&buf, d); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("render differs from %s:\n--- got\n%s\n--- want\n%s", path, buf.Bytes(), want)
			}
		})
	}
}
