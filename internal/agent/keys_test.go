package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys"
	"github.com/regdr/regdr/keys/identity"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/zone"
)

// TestKeyReadinessGate: the gate runs only with keys.require_ready, skips
// an unsigned zone, blocks a DNSKEY set the standby has not proved (the
// message names tag and site), passes once the standby's receipts are
// there, and asks the standby (not the active site) whichever agent runs
// it.
func TestKeyReadinessGate(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := context.Background()
	cfg := &config.Config{Etcd: config.Etcd{Prefix: "/regdr"}, Zones: []config.Zone{{Origin: "test.", Source: "file"}}}
	ids := map[string]*identity.Private{}
	dirs := map[string]string{}
	for _, name := range []string{"tokyo", "osaka"} {
		f := identity.DefaultFiles(filepath.Join(t.TempDir(), "id"))
		id, err := identity.Generate(f)
		if err != nil {
			t.Fatal(err)
		}
		ids[name], dirs[name] = id, filepath.Join(t.TempDir(), "keys")
		os.MkdirAll(dirs[name], 0o700)
		cfg.Sites = append(cfg.Sites, config.Site{Name: name, KeyDir: dirs[name], Identity: &config.SiteIdentity{
			AgeRecipient: id.Public().Age.String(), SigningPublicKey: identity.SigningString(id.Public().Signing),
			AgeIdentityFile: f.AgeIdentity, SigningKeyFile: f.SigningKey}})
	}
	sk := store.Keys{Prefix: "/regdr"}
	if _, err := store.InitActive(ctx, cli, sk, "tokyo", "test"); err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: cfg, site: cfg.Sites[0], keys: sk, etcd: cli}
	if g := a.extraGates(); len(g) != 0 {
		t.Fatalf("gate on without a keys section: %v", g)
	}
	cfg.Keys = &config.Keys{RequireReady: false}
	if g := a.extraGates(); len(g) != 0 {
		t.Fatalf("gate on with require_ready false: %v", g)
	}
	cfg.Keys.RequireReady = true
	gl := a.extraGates()
	if len(gl) != 1 || gl[0].Name() != GateKeyReadiness {
		t.Fatalf("gates: %v", gl)
	}

	ksk, _ := zonesign.GenerateKey(dirs["tokyo"], "test.", 0, true)
	zsk, _ := zonesign.GenerateKey(dirs["tokyo"], "test.", 0, false)
	check := func(g gates.Gate, z *zone.Zone) gates.Result {
		return gates.Run(ctx, []gates.Gate{g}, &gates.Input{Zone: z, Now: time.Now()}).Results[0]
	}
	unsigned := zoneWith(t)
	if r := check(gl[0], unsigned); r.Status != gates.StatusSkip {
		t.Fatalf("unsigned zone: %+v", r)
	}
	signed := zoneWith(t, ksk.DNSKEY, zsk.DNSKEY)
	r := check(gl[0], signed)
	if r.Status != gates.StatusFail || r.Total != 2 {
		t.Fatalf("no receipts: %+v", r)
	}
	for _, f := range r.Findings {
		if !strings.Contains(f.Msg, "osaka") || !(strings.Contains(f.Msg, "tag "+itoa(ksk.Tag)) || strings.Contains(f.Msg, "tag "+itoa(zsk.Tag))) {
			t.Fatalf("finding does not name tag and site: %s", f.Msg)
		}
	}

	// Carry the keys to osaka the way the agents do.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	snd := &keys.Sender{KV: cli, Keys: sk, Cfg: cfg, Site: "tokyo", ID: ids["tokyo"], Backend: inventory.Dir{Path: dirs["tokyo"]}, Log: log}
	if _, err := snd.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	rcv := &keys.Receiver{KV: cli, Keys: sk, Cfg: cfg, Site: "osaka", ID: ids["osaka"], Dir: dirs["osaka"], Log: log}
	if _, _, err := rcv.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	if r := check(gl[0], signed); r.Status != gates.StatusPass {
		t.Fatalf("after osaka's receipts: %+v", r)
	}
	// The same gate at osaka (the standby) asks about osaka too, not
	// about tokyo, the active site.
	b := &Agent{cfg: cfg, site: cfg.Sites[1], keys: sk, etcd: cli}
	if r := check(b.extraGates()[0], signed); r.Status != gates.StatusPass {
		t.Fatalf("gate at osaka: %+v", r)
	}
	// After a failover to osaka, tokyo is the standby: it must have
	// proved its own keys.
	if _, err := store.CASActive(ctx, cli, sk, 1, "osaka", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	if r := check(b.extraGates()[0], signed); r.Status != gates.StatusFail || !strings.Contains(r.Reason, "tokyo") {
		t.Fatalf("after failover, tokyo without receipts: %+v", r)
	}
	own := &keys.Receiver{KV: cli, Keys: sk, Cfg: cfg, Site: "tokyo", ID: ids["tokyo"], Dir: dirs["tokyo"], Log: log}
	if _, err := own.ProveOwn(ctx, inventory.Dir{Path: dirs["tokyo"]}); err != nil {
		t.Fatal(err)
	}
	if r := check(b.extraGates()[0], signed); r.Status != gates.StatusPass {
		t.Fatalf("after failover, tokyo with its own receipts: %+v", r)
	}
}

func itoa(n uint16) string { return strconv.Itoa(int(n)) }

func zoneWith(t *testing.T, dks ...*dns.DNSKEY) *zone.Zone {
	t.Helper()
	soa, err := dns.NewRR("test. 3600 IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 300")
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := dns.NewRR("test. 3600 IN NS ns1.test.")
	rrs := []dns.RR{soa, ns}
	for _, dk := range dks {
		rrs = append(rrs, dk)
	}
	z, err := zone.FromRecords("test.", rrs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}
