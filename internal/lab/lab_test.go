package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/agent"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonemeta"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zoneserve"
	"github.com/regdr/regdr/replicator/zonestore"
)

// eventually polls cond until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < d {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %s, still waiting for %s: %v", d, what, err)
	return 0
}

func statusJSON(t *testing.T, l *lab.Lab) (status.Deployment, labtest.Result) {
	t.Helper()
	r := labtest.Run(t, nil, "status", "--config", l.State.Config, "--output", "json", "--timeout", "1s")
	var d status.Deployment
	if r.Code != 0 {
		return d, r
	}
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("regdr status --output json is not JSON: %v\n%s", err, r.Stdout)
	}
	return d, r
}

func row(d status.Deployment, site string) status.SiteRow {
	for _, s := range d.Sites {
		if s.Site == site {
			return s
		}
	}
	return status.SiteRow{}
}

func TestLab(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 2000})
	ctx := context.Background()

	t.Run("write on tokyo appears on osaka", func(t *testing.T) {
		tokyo, err := pgx.Connect(ctx, l.SiteConnString("tokyo"))
		if err != nil {
			t.Fatal(err)
		}
		defer tokyo.Close(ctx)
		id, err := registry.Register(ctx, tokyo, "replicated-write", []string{"ns1.example.net.", "ns2.example.net."})
		if err != nil {
			t.Fatal(err)
		}
		osaka, err := pgx.Connect(ctx, l.SiteConnString("osaka"))
		if err != nil {
			t.Fatal(err)
		}
		defer osaka.Close(ctx)
		took := eventually(t, 10*time.Second, "journal id on osaka", func() error {
			var n int
			if err := osaka.QueryRow(ctx, `SELECT count(*) FROM journal WHERE id = $1`, id).Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("journal id %d not on osaka yet", id)
			}
			return nil
		})
		t.Logf("journal id %d replicated in %s", id, took)
		if _, err := osaka.Exec(ctx, `INSERT INTO registrants (handle, name, email) VALUES ('x','x','x')`); err == nil {
			t.Fatal("osaka (hot standby) accepted a write")
		}
	})

	t.Run("status shows roles and lag returns to 0 bytes", func(t *testing.T) {
		eventually(t, 30*time.Second, "status: tokyo primary, osaka standby at 0 bytes lag", func() error {
			d, r := statusJSON(t, l)
			if r.Code != 0 {
				return fmt.Errorf("exit %d: %s", r.Code, r.Stderr)
			}
			tk, os := row(d, "tokyo"), row(d, "osaka")
			switch {
			case d.ActiveSite != "tokyo" || d.Epoch != 1 || d.Source != "etcd":
				return fmt.Errorf("active %q epoch %d source %s", d.ActiveSite, d.Epoch, d.Source)
			case tk.Role != "active" || tk.PGRole != "primary":
				return fmt.Errorf("tokyo: role %s pg %s", tk.Role, tk.PGRole)
			case os.Role != "standby" || os.PGRole != "standby":
				return fmt.Errorf("osaka: role %s pg %s", os.Role, os.PGRole)
			case tk.Timeline != 1 || os.Timeline != 1:
				return fmt.Errorf("timelines %d/%d", tk.Timeline, os.Timeline)
			case os.LagBytes == nil:
				return fmt.Errorf("osaka lag unknown")
			case *os.LagBytes != 0:
				return fmt.Errorf("osaka lag %d bytes", *os.LagBytes)
			}
			return nil
		})
		r := labtest.Run(t, nil, "status", "--config", l.State.Config)
		if r.Code != 0 || !strings.Contains(r.Stdout, "tokyo") || !strings.Contains(r.Stdout, "SERIAL "+l.State.TLD) {
			t.Fatalf("table status: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
		}
		t.Logf("regdr status:\n%s", r.Stdout)
	})

	t.Run("secondary follows registry writes by NOTIFY", func(t *testing.T) {
		before, err := l.SecondarySerial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		register(t, l, "notified", []string{"ns1.example.net.", "ns2.example.net."})
		// The zone's SOA refresh is 30 minutes: a new serial within
		// seconds can only have come from NOTIFY.
		took := eventually(t, 15*time.Second, "a newer serial at the secondary", func() error {
			got, err := l.SecondarySerial(ctx)
			if err != nil {
				return err
			}
			if got <= before {
				return fmt.Errorf("still %d", got)
			}
			return nil
		})
		t.Logf("secondary moved past serial %d in %s", before, took)
		m := new(dns.Msg)
		m.SetQuestion("notified."+l.State.TLD, dns.TypeNS)
		in, err := dns.Exchange(m, l.State.Secondary)
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Ns) == 0 {
			t.Fatalf("secondary has no delegation for notified.%s: %v", l.State.TLD, in)
		}
		// The active site checked what the secondary now answers.
		tokyo, _ := l.Cfg.Site("tokyo")
		eventually(t, 15*time.Second, "tokyo's verification of the secondary", func() error {
			st := agentStatus(t, tokyo.AgentAddr)
			serving := agentServing(t, tokyo.AgentAddr, l.State.TLD)
			for _, c := range st.Secondaries {
				if c.Name == "knot" && c.Serial == serving && c.Published == serving && c.Sampled > 0 && len(c.Mismatches) == 0 && c.Error == "" {
					return nil
				}
			}
			return fmt.Errorf("secondaries %+v (serving %d)", st.Secondaries, serving)
		})
		if r := labtest.Run(t, nil, "status", "--config", l.State.Config); !strings.Contains(r.Stdout, "Secondary knot") {
			t.Fatalf("status does not show the secondary check:\n%s", r.Stdout)
		}
		// The standby site pulled the same version from tokyo.
		eventually(t, 15*time.Second, "osaka's agent to serve the same serial", func() error {
			d, _ := statusJSON(t, l)
			tk, os := row(d, "tokyo").Serials[l.State.TLD], row(d, "osaka").Serials[l.State.TLD]
			if tk == 0 || tk != os {
				return fmt.Errorf("tokyo %d osaka %d", tk, os)
			}
			return nil
		})
	})

	t.Run("the generated zone passes every gate", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, l.PrimaryConnString())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		c, err := registry.Count(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		tokyo, _ := l.Cfg.Site("tokyo")
		file := agent.ZoneFile(tokyo.ZoneDir, l.State.TLD)
		// The generator may be writing a newer version; the count and the
		// file must describe the same registry state.
		eventually(t, 10*time.Second, "zone check to pass with the database's count", func() error {
			r := labtest.Run(t, nil, "zone", "check", file, "--origin", l.State.TLD,
				"--expect-delegations", fmt.Sprint(c.Delegations), "-o", "json")
			if r.Code != 0 {
				c, _ = registry.Count(ctx, conn)
				return fmt.Errorf("exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			for _, g := range []string{`"gate": "dnssec",`, `"gate": "reconcile",`} {
				i := strings.Index(r.Stdout, g)
				if i < 0 || !strings.Contains(r.Stdout[i:min(len(r.Stdout), i+80)], `"status": "pass"`) {
					return fmt.Errorf("gate %s did not pass:\n%s", g, r.Stdout)
				}
			}
			return nil
		})
	})

	t.Run("a broken zone is never served; the fixed one is", func(t *testing.T) {
		tokyo, _ := l.Cfg.Site("tokyo")
		file := agent.ZoneFile(tokyo.ZoneDir, l.State.TLD)
		good, err := zone.ParseFile(file, l.State.TLD)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the secondary to serve the current file", func() error {
			got, err := l.SecondarySerial(ctx)
			if err == nil && got != good.Serial {
				err = fmt.Errorf("serves %d, file has %d", got, good.Serial)
			}
			return err
		})
		// and osaka to hold it (it pulls and checks each version after
		// tokyo serves it), so that what it serves below shows whether
		// it took the broken one, not how far behind it was
		eventually(t, 10*time.Second, "osaka to hold the current file", func() error {
			d, _ := statusJSON(t, l)
			if s := row(d, "osaka").Serials[l.State.TLD]; s != good.Serial {
				return fmt.Errorf("osaka serves %d, file has %d", s, good.Serial)
			}
			return nil
		})
		// .se 2009: the generator drops the trailing dot on three names.
		var broken []dns.RR
		doubled := 0
		for _, rr := range good.All() {
			rr = dns.Copy(rr)
			switch h := rr.Header(); {
			case h.Rrtype == dns.TypeSOA:
				rr.(*dns.SOA).Serial = good.Serial + 1
			case h.Rrtype == dns.TypeNS && h.Name != l.State.TLD && doubled < 3:
				h.Name += l.State.TLD
				doubled++
			}
			broken = append(broken, rr)
		}
		if err := zonesign.WriteFileAtomic(file, broken); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "tokyo to report the version blocked by the origin gate", func() error {
			st := agentStatus(t, tokyo.AgentAddr)
			for _, z := range st.Zones {
				if z.Blocked != nil && z.Blocked.Serial == good.Serial+1 && slices.Contains(z.Blocked.Gates, "origin") {
					return nil
				}
			}
			return fmt.Errorf("zones %+v", st.Zones)
		})
		if got, err := l.SecondarySerial(ctx); err != nil || got != good.Serial {
			t.Fatalf("the secondary serves %d (%v), want the last good %d", got, err, good.Serial)
		}
		d, _ := statusJSON(t, l)
		if s := row(d, "osaka").Serials[l.State.TLD]; s != good.Serial {
			t.Fatalf("osaka serves %d, want the last good %d", s, good.Serial)
		}
		if !strings.Contains(strings.Join(row(d, "tokyo").Problems, "\n"), "blocked by origin") {
			t.Fatalf("status does not show the block: %v", row(d, "tokyo").Problems)
		}
		// The generator's next version (after any registry write) is good
		// again and goes out.
		register(t, l, "after-the-fix", []string{"ns1.example.net."})
		took := eventually(t, 15*time.Second, "the fixed version at the secondary", func() error {
			got, err := l.SecondarySerial(ctx)
			if err == nil && !zone.SerialLess(good.Serial+1, got) && got != good.Serial+1 {
				err = fmt.Errorf("serves %d", got)
			}
			return err
		})
		t.Logf("fixed version at the secondary %s after the registry write", took)
	})

	t.Run("a truncated zone is caught by reconciliation with the database", func(t *testing.T) {
		tokyo, _ := l.Cfg.Site("tokyo")
		file := agent.ZoneFile(tokyo.ZoneDir, l.State.TLD)
		good, err := zone.ParseFile(file, l.State.TLD)
		if err != nil {
			t.Fatal(err)
		}
		meta, ok, err := zonemeta.Read(file, good.Serial)
		if err != nil || !ok {
			t.Fatalf("the generator's sidecar for serial %d: %v %v", good.Serial, ok, err)
		}
		// .hk 2004: the batch is killed after writing most of the zone.
		// Two delegations short is far inside the change budget; only
		// the database's count can tell.
		var rrs []dns.RR
		dropped := map[string]bool{}
		for _, rr := range good.All() {
			h := rr.Header()
			if h.Rrtype == dns.TypeSOA {
				rr = dns.Copy(rr)
				rr.(*dns.SOA).Serial = good.Serial + 1
			}
			if h.Rrtype == dns.TypeNS && h.Name != l.State.TLD && (len(dropped) < 2 || dropped[h.Name]) {
				dropped[h.Name] = true
				continue
			}
			rrs = append(rrs, rr)
		}
		meta.Serial = good.Serial + 1
		if err := zonemeta.Write(file, meta); err != nil {
			t.Fatal(err)
		}
		if err := zonesign.WriteFileAtomic(file, rrs); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "tokyo to block the truncated version by reconcile", func() error {
			for _, z := range agentStatus(t, tokyo.AgentAddr).Zones {
				if z.Blocked != nil && z.Blocked.Serial == good.Serial+1 {
					if !slices.Contains(z.Blocked.Gates, "reconcile") || slices.Contains(z.Blocked.Gates, "budget") {
						return fmt.Errorf("blocked by %v, want reconcile (and not budget)", z.Blocked.Gates)
					}
					return nil
				}
			}
			return fmt.Errorf("not blocked yet")
		})
		if got, _ := l.SecondarySerial(ctx); got != good.Serial {
			t.Fatalf("the secondary serves %d, want the last good %d", got, good.Serial)
		}
	})

	t.Run("a blocked version goes out only after two operators approve it", func(t *testing.T) {
		tokyo, _ := l.Cfg.Site("tokyo")
		blocked := uint32(0)
		for _, z := range agentStatus(t, tokyo.AgentAddr).Zones {
			if z.Blocked != nil {
				blocked = z.Blocked.Serial
			}
		}
		if blocked == 0 {
			t.Fatal("no blocked version left by the previous subtest")
		}
		approve := func(op string, extra ...string) labtest.Result {
			args := append([]string{"zone", "approve", l.State.TLD, "--serial", fmt.Sprint(blocked),
				"--operator", op, "--config", l.State.Config}, extra...)
			return labtest.Run(t, nil, args...)
		}
		// No signature: refused as a usage error.
		if r := approve("alice"); r.Code != 2 {
			t.Fatalf("unsigned approval: exit %d, want 2\n%s", r.Code, r.Stderr)
		}
		// bob's key claiming to be alice: refused and audited.
		if r := approve("alice", "--key", l.OperatorKey("bob")); r.Code != 1 || !strings.Contains(r.Stderr, "alice") {
			t.Fatalf("approval with another operator's key: exit %d\n%s", r.Code, r.Stderr)
		}
		if r := approve("alice", "--key", l.OperatorKey("alice")); r.Code != 0 || !strings.Contains(r.Stdout, "1 of 2") {
			t.Fatalf("alice approves: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if r := approve("alice", "--key", l.OperatorKey("alice")); r.Code != 1 || !strings.Contains(r.Stderr, "already approved") {
			t.Fatalf("alice approves twice: exit %d\n%s", r.Code, r.Stderr)
		}
		time.Sleep(2 * time.Second) // two agent ticks: one approval must not be enough
		if got, _ := l.SecondarySerial(ctx); got == blocked {
			t.Fatalf("the secondary serves %d after one approval", got)
		}
		if r := approve("bob", "--key", l.OperatorKey("bob")); r.Code != 0 || !strings.Contains(r.Stdout, "2 of 2") {
			t.Fatalf("bob approves: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		took := eventually(t, 15*time.Second, "the approved version at the secondary and at osaka", func() error {
			got, err := l.SecondarySerial(ctx)
			if err == nil && zone.SerialLess(got, blocked) {
				return fmt.Errorf("secondary serves %d", got)
			}
			osaka, _ := l.Cfg.Site("osaka")
			if s := agentServing(t, osaka.AgentAddr, l.State.TLD); zone.SerialLess(s, blocked) {
				return fmt.Errorf("osaka serves %d", s)
			}
			return err
		})
		t.Logf("override published %s after the second approval", took)
		r := labtest.Run(t, nil, "audit", "list", "--config", l.State.Config, "-o", "json")
		for _, want := range []string{`"zone.override"`, `"approve"`, "refused"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("audit log lacks %s", want)
			}
		}
	})

	t.Run("freeze holds publication, thaw releases it", func(t *testing.T) {
		tokyo, _ := l.Cfg.Site("tokyo")
		r := labtest.Run(t, []string{"REGDR_OPERATOR=alice"}, "zone", "freeze", l.State.TLD, "--reason", "generator maintenance", "--config", l.State.Config)
		if r.Code != 0 {
			t.Fatalf("freeze: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		eventually(t, 5*time.Second, "tokyo to see the freeze", func() error {
			if st := agentStatus(t, tokyo.AgentAddr); !slices.Contains(st.Frozen, l.State.TLD) {
				return fmt.Errorf("frozen %v", st.Frozen)
			}
			return nil
		})
		before, err := l.SecondarySerial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		register(t, l, "during-freeze", []string{"ns1.example.net."})
		var pending uint32
		eventually(t, 10*time.Second, "tokyo to hold the new version", func() error {
			for _, z := range agentStatus(t, tokyo.AgentAddr).Zones {
				if z.Frozen && z.PendingSerial != 0 && z.PendingSerial != before {
					pending = z.PendingSerial
					return nil
				}
			}
			return fmt.Errorf("no held version")
		})
		if got, _ := l.SecondarySerial(ctx); got != before {
			t.Fatalf("the secondary moved to %d during the freeze (held %d)", got, pending)
		}
		r = labtest.Run(t, []string{"REGDR_OPERATOR=bob"}, "zone", "thaw", l.State.TLD, "--config", l.State.Config)
		if r.Code != 0 {
			t.Fatalf("thaw: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		eventually(t, 10*time.Second, "the held version at the secondary", func() error {
			got, err := l.SecondarySerial(ctx)
			if err == nil && got == before {
				err = fmt.Errorf("still %d", got)
			}
			return err
		})
		r = labtest.Run(t, nil, "audit", "list", "--config", l.State.Config)
		if !strings.Contains(r.Stdout, "zone.freeze") || !strings.Contains(r.Stdout, "zone.thaw") || !strings.Contains(r.Stdout, "alice") {
			t.Fatalf("audit lacks the freeze and thaw:\n%s", r.Stdout)
		}
	})

	t.Run("rollback re-publishes a stored version, verified at the secondary", func(t *testing.T) {
		tokyo, _ := l.Cfg.Site("tokyo")
		good := agentServing(t, tokyo.AgentAddr, l.State.TLD)
		register(t, l, "rollback-victim", []string{"ns1.example.net."})
		eventually(t, 10*time.Second, "the victim's version at the secondary", func() error {
			if hasDelegation(l, "rollback-victim") {
				return nil
			}
			return fmt.Errorf("not yet")
		})
		r := labtest.Run(t, []string{"REGDR_OPERATOR=carol"}, "zone", "rollback", l.State.TLD, "--to", fmt.Sprint(good),
			"--reason", "bad batch", "--config", l.State.Config, "--timeout", "30s")
		if r.Code != 0 {
			t.Fatalf("rollback: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		t.Logf("%s", strings.TrimSpace(r.Stdout))
		if hasDelegation(l, "rollback-victim") {
			t.Fatal("the secondary still delegates rollback-victim after the rollback")
		}
		var ms []zonestore.Manifest
		r = labtest.Run(t, nil, "zone", "history", l.State.TLD, "--site", "tokyo", "--config", l.State.Config, "-o", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &ms); err != nil {
			t.Fatal(err)
		}
		last := ms[len(ms)-1]
		if last.Source != fmt.Sprintf("rollback:%d", good) || !last.Published || last.Report == nil || !last.Report.Pass {
			t.Fatalf("newest stored version %+v", last)
		}
		if r := labtest.Run(t, nil, "zone", "thaw", l.State.TLD, "--config", l.State.Config); r.Code != 0 {
			t.Fatalf("thaw: %s", r.Stderr)
		}
		r = labtest.Run(t, nil, "audit", "list", "--config", l.State.Config)
		if !strings.Contains(r.Stdout, "zone.rollback.request") || !strings.Contains(r.Stdout, "agent tokyo") {
			t.Fatalf("audit lacks the rollback:\n%s", r.Stdout)
		}
	})

	t.Run("a version tampered on the way is refused at osaka", func(t *testing.T) {
		tokyo, _ := l.Cfg.Site("tokyo")
		osaka, _ := l.Cfg.Site("osaka")
		var served uint32
		eventually(t, 15*time.Second, "both sites on the same serial", func() error {
			d, _ := statusJSON(t, l)
			tk, os := row(d, "tokyo").Serials[l.State.TLD], row(d, "osaka").Serials[l.State.TLD]
			if tk == 0 || tk != os {
				return fmt.Errorf("tokyo %d osaka %d", tk, os)
			}
			served = os
			return nil
		})
		good, err := zone.ParseFile(agent.ZoneFile(tokyo.ZoneDir, l.State.TLD), l.State.TLD)
		if err != nil {
			t.Fatal(err)
		}
		// Whatever sits at tokyo's hidden-primary address and holds the
		// TSIG key — a compromised or buggy tokyo — serves a version
		// with most delegations gone (RIPE 2017: valid signature,
		// nonsense data).
		var rrs []dns.RR
		kept := 0
		for _, rr := range good.All() {
			rr = dns.Copy(rr)
			if soa, ok := rr.(*dns.SOA); ok {
				soa.Serial = served + 1000
			}
			if rr.Header().Rrtype == dns.TypeNS && rr.Header().Name != l.State.TLD {
				if kept++; kept%2 == 0 {
					continue
				}
			}
			rrs = append(rrs, rr)
		}
		bad, err := zone.FromRecords(l.State.TLD, rrs)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := l.State.Proc("agent-tokyo")
		if err := lab.Kill(p); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := l.StartAgent(ctx, "tokyo"); err != nil {
				t.Fatal(err)
			}
		}()
		_, secret, err := l.Cfg.TSIG("xfr")
		if err != nil {
			t.Fatal(err)
		}
		var rogue *zoneserve.Server
		// The killed agent's sockets go with its last reference.
		eventually(t, 10*time.Second, "tokyo's DNS address to be free", func() error {
			var err error
			if rogue, err = zoneserve.New(zoneserve.Options{Addr: tokyo.DNSAddr, TSIG: map[string]string{"xfr.": secret}}); err != nil {
				return err
			}
			if err = rogue.Start(ctx); err != nil {
				rogue.Close()
			}
			return err
		})
		defer rogue.Close()
		rogue.SetZone(bad)
		res := zoneserve.Notify(ctx, []string{osaka.DNSAddr}, l.State.TLD, bad.Serial, "xfr.", secret)
		if res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
		eventually(t, 15*time.Second, "osaka to block the pulled version", func() error {
			for _, z := range agentStatus(t, osaka.AgentAddr).Zones {
				if z.Blocked != nil && z.Blocked.Serial == bad.Serial && slices.Contains(z.Blocked.Gates, "budget") {
					if z.Serial != served {
						return fmt.Errorf("osaka serves %d, want still %d", z.Serial, served)
					}
					return nil
				}
			}
			return fmt.Errorf("not blocked yet")
		})
		if got, err := zonepull.QuerySerial(ctx, osaka.DNSAddr, l.State.TLD); err != nil || got != served {
			t.Fatalf("osaka answers serial %d (%v), want %d", got, err, served)
		}
	})

	t.Run("every accepted version is in the store; history and diff", func(t *testing.T) {
		var tk []zonestore.Manifest
		r := labtest.Run(t, nil, "zone", "history", l.State.TLD, "--site", "tokyo", "--config", l.State.Config, "-o", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &tk); err != nil || r.Code != 0 || len(tk) < 2 {
			t.Fatalf("tokyo history: exit %d, %v, %d versions\n%s%s", r.Code, err, len(tk), r.Stdout, r.Stderr)
		}
		last := tk[len(tk)-1]
		if !last.Published || last.AcceptedBy != "agent tokyo" || last.Report == nil || !last.Report.Pass {
			t.Fatalf("tokyo's newest version: %+v", last)
		}
		// The generator's sidecar carried the database's count, so the
		// agent reconciled (not skipped) every version from the file.
		fromFile := false
		for i := len(tk) - 1; i >= 0 && !fromFile; i-- {
			if fromFile = strings.HasPrefix(tk[i].Source, "file:"); fromFile {
				if res, ok := tk[i].Report.Result("reconcile"); !ok || res.Status != "pass" {
					t.Fatalf("reconcile on tokyo's newest version from the generator (%d): %+v", tk[i].Serial, res)
				}
			}
		}
		if !fromFile {
			t.Fatal("no version from the generator's file in tokyo's store")
		}
		var os []zonestore.Manifest
		r = labtest.Run(t, nil, "zone", "history", l.State.TLD, "--site", "osaka", "--config", l.State.Config, "-o", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &os); err != nil || len(os) == 0 {
			t.Fatalf("osaka history: %v\n%s%s", err, r.Stdout, r.Stderr)
		}
		for _, m := range os {
			if m.Published || !strings.HasPrefix(m.Source, "axfr:tokyo") {
				t.Fatalf("osaka (standby) version %d: published %v source %s", m.Serial, m.Published, m.Source)
			}
		}
		r = labtest.Run(t, nil, "zone", "diff", l.State.TLD, fmt.Sprint(tk[0].Serial), fmt.Sprint(last.Serial), "--site", "tokyo", "--config", l.State.Config, "-o", "json")
		var diff struct{ Added []string }
		if err := json.Unmarshal([]byte(r.Stdout), &diff); err != nil || r.Code != 0 {
			t.Fatalf("zone diff: exit %d %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
		}
		found := false
		for _, a := range diff.Added {
			found = found || strings.HasPrefix(a, "notified."+l.State.TLD)
		}
		if !found {
			t.Fatalf("diff %d -> %d does not add notified.%s: %v", tk[0].Serial, last.Serial, l.State.TLD, diff.Added)
		}
	})

	t.Run("audit verify on a real chain, and an edited entry", func(t *testing.T) {
		cli, err := etcdclient.Dial(l.Cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		keys := store.Keys{Prefix: l.Cfg.Etcd.Prefix}
		log := audit.New(cli, keys)
		var last audit.Entry
		for i := range 5 {
			last, err = log.Append(ctx, audit.Entry{Who: "test", Action: "test.append", Target: fmt.Sprint(i), Result: "ok"})
			if err != nil {
				t.Fatal(err)
			}
		}
		r := labtest.Run(t, nil, "audit", "verify", "--config", l.State.Config)
		if r.Code != 0 {
			t.Fatalf("verify of an intact chain: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		r = labtest.Run(t, nil, "audit", "list", "--config", l.State.Config, "-o", "json")
		var entries []audit.Entry
		if err := json.Unmarshal([]byte(r.Stdout), &entries); err != nil || len(entries) < 5 {
			t.Fatalf("audit list: %v %d entries\n%s", err, len(entries), r.Stdout)
		}
		// Edit one stored entry behind regdr's back.
		key := keys.AuditEntry(last.Seq - 2)
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read %s: %v", key, err)
		}
		edited := strings.Replace(string(resp.Kvs[0].Value), `"ok"`, `"failed"`, 1)
		if edited == string(resp.Kvs[0].Value) {
			t.Fatalf("could not edit %s", resp.Kvs[0].Value)
		}
		if _, err := cli.Put(ctx, key, edited); err != nil {
			t.Fatal(err)
		}
		r = labtest.Run(t, nil, "audit", "verify", "--config", l.State.Config)
		if r.Code != 1 || !strings.Contains(r.Stderr, fmt.Sprint(last.Seq-2)) {
			t.Fatalf("verify of an edited chain: exit %d, want 1 naming seq %d\n%s%s", r.Code, last.Seq-2, r.Stdout, r.Stderr)
		}
		t.Logf("edited chain: %s", strings.TrimSpace(r.Stderr))
	})

	t.Run("tokyo loses its zone store: cold-start freeze and the last published version back from osaka", func(t *testing.T) {
		// RIPE 2012: the zone files were lost and no backup was found.
		tokyo, _ := l.Cfg.Site("tokyo")
		published := agentServing(t, tokyo.AgentAddr, l.State.TLD)
		p, ok := l.State.Proc("agent-tokyo")
		if !ok {
			t.Fatal("no agent-tokyo process")
		}
		if err := lab.Kill(p); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(tokyo.ZoneDir, "store")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(agent.ZoneFile(tokyo.ZoneDir, l.State.TLD)); err != nil {
			t.Fatal(err)
		}
		if err := l.StartAgent(ctx, "tokyo"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "tokyo to serve the last published version again, frozen", func() error {
			st := agentStatus(t, tokyo.AgentAddr)
			if !slices.Contains(st.Frozen, l.State.TLD) {
				return fmt.Errorf("not frozen: %v", st.Frozen)
			}
			for _, z := range st.Zones {
				if z.Origin == l.State.TLD && z.Serial == published {
					return nil
				}
			}
			return fmt.Errorf("zones %+v, want serial %d", st.Zones, published)
		})
		r := labtest.Run(t, nil, "audit", "list", "--config", l.State.Config)
		if !strings.Contains(r.Stdout, "cold-start") {
			t.Errorf("audit log does not record the cold-start freeze:\n%s", r.Stdout)
		}
		if r := labtest.Run(t, nil, "zone", "thaw", l.State.TLD, "--config", l.State.Config); r.Code != 0 {
			t.Fatalf("thaw: %d %s", r.Code, r.Stderr)
		}
		register(t, l, "after-cold-start", []string{"ns1.example.net."})
		eventually(t, 15*time.Second, "a new version at the secondary after the thaw", func() error {
			got, err := l.SecondarySerial(ctx)
			if err == nil && !zone.SerialLess(published, got) {
				err = fmt.Errorf("serves %d", got)
			}
			return err
		})
	})

	t.Run("agents gossip; a killed agent shows down within 10s", func(t *testing.T) {
		eventually(t, 20*time.Second, "every agent up over HTTP, seeing its peers", func() error {
			d, _ := statusJSON(t, l)
			for _, s := range d.Sites {
				if s.AgentSeen != "http" {
					return fmt.Errorf("%s agent %s", s.Site, s.AgentSeen)
				}
			}
			return nil
		})
		p, ok := l.State.Proc("agent-osaka")
		if !ok {
			t.Fatal("no agent-osaka process")
		}
		if err := lab.Kill(p); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		eventually(t, 10*time.Second, "status to show osaka's agent down", func() error {
			d, _ := statusJSON(t, l)
			if os := row(d, "osaka"); os.AgentAlive || os.AgentSeen != "down" {
				return fmt.Errorf("osaka agent %s", os.AgentSeen)
			}
			return nil
		})
		t.Logf("osaka agent shown down %s after the kill", time.Since(killed).Round(time.Millisecond))
		if err := l.StartAgent(ctx, "osaka"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "osaka back, seen by tokyo's gossip", func() error {
			d, _ := statusJSON(t, l)
			if os := row(d, "osaka"); os.AgentSeen != "http" {
				return fmt.Errorf("osaka agent %s", os.AgentSeen)
			}
			return nil
		})
	})

	t.Run("metrics and healthz", func(t *testing.T) {
		tokyo, _ := l.Cfg.Site("tokyo")
		eventually(t, 10*time.Second, "tokyo's metrics", func() error {
			body, code, err := httpGet("http://" + tokyo.AgentAddr + "/metrics")
			if err != nil || code != 200 {
				return fmt.Errorf("GET /metrics: %d %v", code, err)
			}
			for _, want := range []string{
				`regdr_replication_lag_bytes{replica="osaka",site="tokyo"}`,
				`regdr_zone_serial{site="tokyo",zone="` + l.State.TLD + `"}`,
				`regdr_agent_peers_alive{site="tokyo"} 2`,
				`regdr_etcd_reachable{site="tokyo"} 1`,
				`regdr_pg_primary{site="tokyo"} 1`,
			} {
				if !strings.Contains(body, want) {
					return fmt.Errorf("no %s in /metrics", want)
				}
			}
			return nil
		})
		body, code, err := httpGet("http://" + tokyo.AgentAddr + "/healthz")
		if err != nil || code != 200 || !strings.Contains(body, `"site": "tokyo"`) {
			t.Fatalf("GET /healthz: %d %v\n%s", code, err, body)
		}
	})

	t.Run("etcd lost: status answers from gossip and says so", func(t *testing.T) {
		p, ok := l.State.Proc("etcd-tokyo")
		if !ok {
			t.Fatal("no etcd-tokyo process")
		}
		if err := lab.Kill(p); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "status from memberlist", func() error {
			d, r := statusJSON(t, l)
			if r.Code != 0 {
				return fmt.Errorf("exit %d: %s", r.Code, r.Stderr)
			}
			if d.Source != "memberlist" || d.ActiveSite != "tokyo" || d.Epoch != 1 || d.Etcd.Reachable {
				return fmt.Errorf("source %s active %s epoch %d", d.Source, d.ActiveSite, d.Epoch)
			}
			if row(d, "tokyo").Role != "active" || row(d, "osaka").Role != "standby" || !row(d, "osaka").AgentAlive {
				return fmt.Errorf("rows %+v", d.Sites)
			}
			return nil
		})
		r := labtest.Run(t, nil, "status", "--config", l.State.Config, "--timeout", "1s")
		if r.Code != 0 || !strings.Contains(r.Stdout, "source: memberlist") || !strings.Contains(r.Stdout, "etcd unreachable") {
			t.Fatalf("table status without etcd: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		t.Logf("status without etcd:\n%s", r.Stdout)
		if err := l.Restart(ctx, "etcd-tokyo"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "status from etcd again", func() error {
			d, _ := statusJSON(t, l)
			if d.Source != "etcd" || d.ActiveSite != "tokyo" {
				return fmt.Errorf("source %s active %s", d.Source, d.ActiveSite)
			}
			return nil
		})
	})

	t.Run("lab down leaves no process or port", func(t *testing.T) {
		parts := l.Parts()
		r := labtest.Run(t, nil, "lab", "down", "--dir", l.State.Dir)
		if r.Code != 0 {
			t.Fatalf("lab down: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		for _, p := range l.Parts() {
			if p.Running {
				t.Errorf("%s (pid %d) still running", p.Name, p.Pid)
			}
		}
		for _, a := range l.State.Listen {
			if lab.Listening(a) {
				t.Errorf("%s still accepts connections", a)
			}
		}
		if len(parts) < 8 {
			t.Errorf("lab had only %d parts: %+v", len(parts), parts)
		}
	})
}

func httpGet(url string) (string, int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// TestLabThreeEtcdMembers: tokyo, osaka and the witness each hold an etcd
// member; losing one keeps quorum and status keeps reading etcd.
func TestLabThreeEtcdMembers(t *testing.T) {
	l := labtest.Up(t, lab.Options{Domains: 50, EtcdMembers: 3})
	ctx := context.Background()
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ml, err := cli.MemberList(c)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ml.Members {
		names = append(names, m.Name)
	}
	if len(names) != 3 {
		t.Fatalf("etcd members %v, want tokyo, osaka, witness", names)
	}
	p, _ := l.State.Proc("etcd-witness")
	if err := lab.Kill(p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "status from etcd with one member down", func() error {
		d, r := statusJSON(t, l)
		if r.Code != 0 || d.Source != "etcd" || d.ActiveSite != "tokyo" || row(d, "osaka").Role != "standby" {
			return fmt.Errorf("exit %d source %s active %s", r.Code, d.Source, d.ActiveSite)
		}
		return nil
	})
}

func agentStatus(t *testing.T, addr string) status.Agent {
	t.Helper()
	body, code, err := httpGet("http://" + addr + "/v1/status")
	var st status.Agent
	if err != nil || code != 200 {
		return st
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/v1/status: %v", err)
	}
	return st
}

func agentServing(t *testing.T, addr, origin string) uint32 {
	t.Helper()
	for _, z := range agentStatus(t, addr).Zones {
		if z.Origin == origin {
			return z.Serial
		}
	}
	t.Fatalf("agent %s serves no %s", addr, origin)
	return 0
}

// hasDelegation asks the public secondary for label's NS.
func hasDelegation(l *lab.Lab, label string) bool {
	m := new(dns.Msg)
	m.SetQuestion(label+"."+l.State.TLD, dns.TypeNS)
	in, err := dns.Exchange(m, l.State.Secondary)
	return err == nil && in.Rcode == dns.RcodeSuccess && len(in.Ns) > 0 && in.Ns[0].Header().Rrtype == dns.TypeNS
}

// register makes one registry write at whichever site is primary.
func register(t *testing.T, l *lab.Lab, label string, ns []string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, l.PrimaryConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	id, err := registry.Register(ctx, conn, label, ns)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
