package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/knotlab"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zone/zonetest"
)

// TestSignerSource: a zone with `source: axfr` comes from the registry's
// own signer (a real Knot serving a signed zone file as primary) by AXFR
// with TSIG, on the signer's NOTIFY; a broken version from the signer is
// gated like a generator's file and never served.
func TestSignerSource(t *testing.T) {
	endpoints, cli := etcdtest.Start(t)
	dir := t.TempDir()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	secretB64 := base64.StdEncoding.EncodeToString(secret)
	secretFile := filepath.Join(dir, "xfr.tsig")
	if err := os.WriteFile(secretFile, []byte(secretB64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := newFreePorts()
	signerAddr := ports.addr(t)
	d := config.Default()
	cfg := &config.Config{
		Deployment: "signertest",
		Etcd:       config.Etcd{Endpoints: endpoints, Prefix: "/regdr", DialTimeout: config.Duration{Duration: 2 * time.Second}},
		Zones:      []config.Zone{{Origin: origin, Source: "axfr", SourceAddr: signerAddr, TSIGKey: "xfr"}},
		TSIGKeys:   []config.TSIGKey{{Name: "xfr", Algorithm: "hmac-sha256", SecretFile: secretFile}},
		Gates:      d.Gates,
		Agent:      config.Agent{HeartbeatInterval: d.Agent.HeartbeatInterval, Gossip: "local", LeaseTTL: config.Duration{Duration: 5 * time.Second}},
	}
	for _, name := range []string{"tokyo", "osaka"} {
		// No registry database here: the site reports it unreachable,
		// which does not stop zones.
		cfg.Sites = append(cfg.Sites, config.Site{Name: name, AgentAddr: ports.addr(t), GossipAddr: ports.addr(t), DNSAddr: ports.addr(t),
			Postgres: "host=127.0.0.1 port=1 dbname=registry connect_timeout=1",
			KeyDir:   filepath.Join(dir, name, "keys"), ZoneDir: filepath.Join(dir, name, "zones")})
	}
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "regdr.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.Load(filepath.Join(dir, "regdr.yaml")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if _, err := store.InitActive(ctx, cli, store.Keys{Prefix: "/regdr"}, "tokyo", "signer test"); err != nil {
		t.Fatal(err)
	}

	// The signer: Knot, primary for the zone from a file, NOTIFYing the
	// active site's hidden primary.
	signerDir := filepath.Join(dir, "signer")
	keyDir := filepath.Join(signerDir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, ksk := range []bool{true, false} {
		if _, err := zonesign.GenerateKey(keyDir, origin, dns.ECDSAP256SHA256, ksk); err != nil {
			t.Fatal(err)
		}
	}
	zoneFile := filepath.Join(signerDir, "test.zone")
	write := func(serial uint32, doubled int) {
		t.Helper()
		keys, err := zonesign.LoadKeys(keyDir, origin)
		if err != nil {
			t.Fatal(err)
		}
		rrs := zonetest.Records(origin, serial, 60)
		// The .se 2009 missing trailing dot on a few delegations (their
		// NS and DS move together, as a generator's would).
		owners := map[string]bool{}
		for _, rr := range rrs {
			if h := rr.Header(); h.Rrtype == dns.TypeNS && h.Name != origin && len(owners) < doubled {
				owners[h.Name] = true
			}
		}
		for _, rr := range rrs {
			if h := rr.Header(); owners[h.Name] {
				h.Name += origin
			}
		}
		signed, err := zonesign.Sign(ctx, rrs, origin, keys, zonesign.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := zonesign.WriteFileAtomic(zoneFile, signed); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 0)
	tokyoSite, _ := cfg.Site("tokyo")
	k, err := knotlab.Start(ctx, knotlab.Config{Dir: signerDir + "/knot", Listen: netip.MustParseAddrPort(signerAddr),
		Zones:    []knotlab.ZoneConf{{Origin: origin, File: zoneFile, IXFR: true, Notify: []netip.AddrPort{netip.MustParseAddrPort(tokyoSite.DNSAddr)}}},
		TSIGName: "xfr.", TSIGAlgorithm: "hmac-sha256", TSIGSecret: secretB64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Stop(context.Background()) })

	tokyo := startAgent(t, cfg, "tokyo")
	agents := []*runningAgent{tokyo}
	waitFor(t, 20*time.Second, "tokyo serving serial 1 from the signer", agents, func() error { return servesSerial(tokyo, 1) })

	// A new version at the signer reaches the agent by NOTIFY, well
	// before the 10 s refresh.
	write(2, 0)
	if err := syscall.Kill(k.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 8*time.Second, "tokyo serving serial 2 after the signer's NOTIFY", agents, func() error { return servesSerial(tokyo, 2) })
	t.Logf("serial 2 served %s after the signer reloaded", time.Since(start).Round(time.Millisecond))

	// A broken version from the signer is blocked, serial 2 stays.
	write(3, 2)
	if err := syscall.Kill(k.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "serial 3 blocked by the origin gate", agents, func() error {
		st, err := tokyo.status()
		if err != nil {
			return err
		}
		z, _ := zoneState(st, origin)
		if z.Blocked == nil || z.Blocked.Serial != 3 || !slices.Contains(z.Blocked.Gates, "origin") {
			return fmt.Errorf("zone state %+v", z)
		}
		return nil
	})
	if err := servesSerial(tokyo, 2); err != nil {
		t.Fatal(err)
	}
}
