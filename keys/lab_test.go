package keys_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys"
)

// TestLabRollover is the lab test: the lab's keys are proved at
// osaka before the first zone goes out; a new ZSK generated at tokyo
// while osaka's agent is down is held back by the key-readiness gate
// (Knot keeps serving the old DNSKEY set), and once osaka is back the
// key reaches it, is proved, and only then does the zone carrying it
// reach Knot. Finally etcd and every agent log are scanned for private
// key material.
func TestLabRollover(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 300})
	ctx := context.Background()
	cfgPath := l.State.Config

	r := labtest.Run(t, nil, "--config", cfgPath, "keys", "status", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("keys status: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var ov keys.Overview
	if err := json.Unmarshal([]byte(r.Stdout), &ov); err != nil {
		t.Fatal(err)
	}
	if len(ov.Keys) != 2 {
		t.Fatalf("keys status lists %d keys, want 2:\n%s", len(ov.Keys), r.Stdout)
	}
	for _, k := range ov.Keys {
		if got := siteState(k, "osaka"); got != keys.StateVerified {
			t.Fatalf("tag %d at osaka is %s after lab up", k.Tag, got)
		}
		if got := siteState(k, "tokyo"); got != keys.StateVerified && got != keys.StatePresent {
			t.Fatalf("tag %d at tokyo is %s", k.Tag, got)
		}
	}

	// The agents' status carries their key inventories (public facts).
	for _, site := range []string{"tokyo", "osaka"} {
		s, _ := l.Cfg.Site(site)
		st, err := agentStatus(s.AgentAddr)
		if err != nil {
			t.Fatal(err)
		}
		if st.Keys == nil || len(st.Keys.Keys) != 2 || st.Keys.Keys[0].State != "ok" {
			t.Fatalf("%s status keys: %+v", site, st.Keys)
		}
	}

	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sk := store.Keys{Prefix: l.Cfg.Etcd.Prefix}

	// osaka's agent goes away; the rollover starts.
	osaka, _ := l.Cfg.Site("osaka")
	p, ok := l.State.Proc("agent-osaka")
	if !ok {
		t.Fatal("no osaka agent in the lab state")
	}
	if err := syscall.Kill(p.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "osaka agent to stop", func() error {
		if lab.Listening(osaka.AgentAddr) {
			return fmt.Errorf("still listening")
		}
		return nil
	})
	tokyo, _ := l.Cfg.Site("tokyo")
	zsk, err := zonesign.GenerateKey(tokyo.KeyDir, l.State.TLD, dns.ECDSAP256SHA256, false)
	if err != nil {
		t.Fatal(err)
	}
	register(t, l, "rollover-1", []string{"ns1.example.net.", "ns2.example.net."})

	// tokyo blocks the version carrying the new ZSK, naming tag and site.
	var blocked *status.BlockedVersion
	waitFor(t, 30*time.Second, "tokyo to block the version with the new ZSK", func() error {
		st, err := agentStatus(tokyo.AgentAddr)
		if err != nil {
			return err
		}
		for _, z := range st.Zones {
			if z.Blocked != nil && strings.Contains(strings.Join(z.Blocked.Findings, "\n"), fmt.Sprintf("tag %d", zsk.Tag)) {
				blocked = z.Blocked
				return nil
			}
		}
		return fmt.Errorf("not blocked yet: %+v", st.Zones)
	})
	msg := strings.Join(blocked.Findings, "\n")
	if !strings.Contains(strings.Join(blocked.Gates, ","), "key-readiness") || !strings.Contains(msg, "osaka") {
		t.Fatalf("blocked by %v, findings:\n%s", blocked.Gates, msg)
	}
	t.Logf("blocked as expected: %s", blocked.Findings[0])
	// keys status says the same: missing at osaka, exit 1.
	waitFor(t, 10*time.Second, "keys status to show the new ZSK missing at osaka", func() error {
		r := labtest.Run(t, nil, "--config", cfgPath, "keys", "status")
		want := fmt.Sprintf("tag %d at osaka: missing", zsk.Tag)
		if r.Code != 1 || !strings.Contains(r.Stdout, want) {
			return fmt.Errorf("exit %d, want 1 and %q:\n%s%s", r.Code, want, r.Stdout, r.Stderr)
		}
		return nil
	})
	if served(t, l, zsk.Tag) {
		t.Fatal("Knot serves the new ZSK while osaka cannot sign with it")
	}

	// osaka comes back: the key travels, is proved, and then goes out.
	if err := l.Restart(ctx, "agent-osaka"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 30*time.Second, "Knot to serve the new ZSK", func() error {
		if !served(t, l, zsk.Tag) {
			return fmt.Errorf("tag %d not served yet", zsk.Tag)
		}
		return nil
	})
	sighted := time.Now()
	rep, err := keys.Readiness(ctx, cli, sk, l.Cfg, "osaka", l.State.TLD, []*dns.DNSKEY{zsk.DNSKEY})
	if err != nil || !rep.Ready {
		t.Fatalf("new ZSK served but not ready at osaka: %s %v", rep, err)
	}
	if !rep.Keys[0].Proved.Before(sighted) {
		t.Fatalf("proved at %s, after Knot served it at %s", rep.Keys[0].Proved, sighted)
	}
	t.Logf("osaka back → new ZSK served in %s (proved %s)", sighted.Sub(start).Round(time.Millisecond), rep.Keys[0].Detail)
	if got, err := zonesign.LoadKeys(osaka.KeyDir, l.State.TLD); err != nil || len(got) != 3 {
		t.Fatalf("osaka key dir: %d keys, %v", len(got), err)
	}

	// Nothing left to send; the CLI agrees with the agents.
	r = labtest.Run(t, nil, "--config", cfgPath, "keys", "sync", "--site", "tokyo")
	if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to send") {
		t.Fatalf("keys sync after the rollover: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = labtest.Run(t, nil, "--config", cfgPath, "keys", "status")
	if r.Code != 0 || strings.Count(r.Stdout, "verified") < 3 {
		t.Fatalf("keys status after the rollover: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	scanLab(t, l, cli)
}

func siteState(k keys.KeyStatus, site string) string {
	for _, s := range k.Sites {
		if s.Site == site {
			return s.State
		}
	}
	return ""
}

func agentStatus(addr string) (status.Agent, error) {
	var st status.Agent
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// served reports whether the public secondary serves a DNSKEY with tag.
func served(t *testing.T, l *lab.Lab, tag uint16) bool {
	m := new(dns.Msg)
	m.SetQuestion(l.State.TLD, dns.TypeDNSKEY)
	m.SetEdns0(4096, true)
	in, err := dns.Exchange(m, l.State.Secondary)
	if err != nil {
		return false
	}
	for _, rr := range in.Answer {
		if dk, ok := rr.(*dns.DNSKEY); ok && dk.KeyTag() == tag {
			return true
		}
	}
	return false
}

func register(t *testing.T, l *lab.Lab, label string, ns []string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, l.PrimaryConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := registry.Register(ctx, conn, label, ns); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scanLab searches every etcd value and every lab log for the lab's
// private keys (file bytes, base64 fields, raw bytes) and identities.
func scanLab(t *testing.T, l *lab.Lab, cli *clientv3.Client) {
	var needles [][]byte
	for _, s := range l.Cfg.DataSites() {
		ents, _ := os.ReadDir(s.KeyDir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".private") {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(s.KeyDir, e.Name()))
			needles = append(needles, b)
			for _, line := range strings.Split(string(b), "\n") {
				if name, val, ok := strings.Cut(line, ": "); ok && name == "PrivateKey" {
					needles = append(needles, []byte(strings.TrimSpace(val)))
					if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(val)); err == nil {
						needles = append(needles, raw)
					}
				}
			}
		}
		for _, f := range []string{s.Identity.AgeIdentityFile, s.Identity.SigningKeyFile} {
			b, _ := os.ReadFile(f)
			needles = append(needles, bytes.TrimSpace(b))
		}
	}
	if len(needles) < 8 {
		t.Fatalf("secret scan found only %d needles", len(needles))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(l.State.Dir, "*.log"))
	var logBytes [][]byte
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		logBytes = append(logBytes, b)
	}
	for _, n := range needles {
		for _, kv := range resp.Kvs {
			if bytes.Contains(kv.Value, n) {
				t.Errorf("etcd key %s holds private key material", kv.Key)
			}
		}
		for i, b := range logBytes {
			if bytes.Contains(b, n) {
				t.Errorf("log %s holds private key material", logs[i])
			}
		}
	}
	t.Logf("secret scan: %d needles in %d etcd values and %d logs", len(needles), len(resp.Kvs), len(logs))
}
