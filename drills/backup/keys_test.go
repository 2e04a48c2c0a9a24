package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys"
	"github.com/regdr/regdr/keys/identity"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonestore"
)

// The keys phase: the newest bundle addressed to the verify site at the
// restore point must verify, decrypt and hold every DNSKEY of the zone
// published then; once the receiver has opened (and deleted) it, the
// installed keys stand in; with no keys section it is unknown.
func TestBundleKeyCheck(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := context.Background()
	sk := store.Keys{Prefix: "/regdr"}
	cfg := &config.Config{Etcd: config.Etcd{Prefix: "/regdr"}, Zones: []config.Zone{{Origin: "test.", Source: "file"}}, Keys: &config.Keys{}}
	ids := map[string]*identity.Private{}
	dirs := map[string]string{}
	for _, name := range []string{"tokyo", "osaka"} {
		f := identity.DefaultFiles(filepath.Join(t.TempDir(), "identity"))
		id, err := identity.Generate(f)
		if err != nil {
			t.Fatal(err)
		}
		ids[name], dirs[name] = id, filepath.Join(t.TempDir(), "keys")
		if err := os.MkdirAll(dirs[name], 0o700); err != nil {
			t.Fatal(err)
		}
		cfg.Sites = append(cfg.Sites, config.Site{Name: name, KeyDir: dirs[name], Identity: &config.SiteIdentity{
			AgeRecipient: id.Public().Age.String(), SigningPublicKey: identity.SigningString(id.Public().Signing),
			AgeIdentityFile: f.AgeIdentity, SigningKeyFile: f.SigningKey,
		}})
	}
	var dnskeys []dns.RR
	for _, ksk := range []bool{true, false} {
		k, err := zonesign.GenerateKey(dirs["tokyo"], "test.", dns.ECDSAP256SHA256, ksk)
		if err != nil {
			t.Fatal(err)
		}
		dnskeys = append(dnskeys, k.DNSKEY)
	}
	// A key the zone publishes that tokyo never sends.
	stray, err := zonesign.GenerateKey(t.TempDir(), "test.", dns.ECDSAP256SHA256, false)
	if err != nil {
		t.Fatal(err)
	}
	zs, err := zonestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	publish := func(serial uint32, at time.Time, keys []dns.RR) {
		rrs := append([]dns.RR{
			&dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600}, Ns: "a.nic.test.", Mbox: "h.test.", Serial: serial},
			&dns.NS{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 3600}, Ns: "a.nic.test."},
		}, keys...)
		z, err := zone.FromRecords("test.", rrs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := zs.Put(z, zonestore.Manifest{AcceptedAt: at, AcceptedBy: "test", Source: "file:test.zone"}); err != nil {
			t.Fatal(err)
		}
		if err := zs.MarkPublished("test.", serial, at); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	publish(1, t0, dnskeys)
	publish(2, t0.Add(30*time.Minute), append(dnskeys[:2:2], stray.DNSKEY))

	sender := &keys.Sender{KV: cli, Keys: sk, Cfg: cfg, Site: "tokyo", ID: ids["tokyo"], Backend: inventory.Dir{Path: dirs["tokyo"]}, Log: etcdtest.Logger(t)}
	if sent, err := sender.Sync(ctx); err != nil || len(sent) != 1 {
		t.Fatalf("send bundle: %+v %v", sent, err)
	}
	check := backup.BundleKeyCheck(cli, cfg, "osaka", zs, "test.")
	now := time.Now()

	detail, err := check(ctx, now.Add(-35*time.Minute)) // serial 1 published, bundle not yet sent
	if err == nil || !strings.Contains(err.Error(), "neither in a key bundle for osaka nor installed") {
		t.Errorf("before the bundle: %q, %v; want a failure", detail, err)
	}
	detail, err = check(ctx, now.Add(time.Minute)) // serial 2, with the stray key
	if err == nil || !strings.Contains(err.Error(), "DNSKEY tags "+itoa(stray.Tag)) {
		t.Errorf("stray key: %q, %v; want a failure naming tag %d", detail, err, stray.Tag)
	}
	publish(3, now.Add(2*time.Minute), dnskeys)
	detail, err = check(ctx, now.Add(3*time.Minute))
	if err != nil || !strings.Contains(detail, "2 DNSKEYs of test. serial 3 are in the key bundles (tokyo seq") {
		t.Errorf("good bundle: %q, %v", detail, err)
	}

	// osaka opens the bundle (and deletes it): the installed keys count.
	rcv := &keys.Receiver{KV: cli, Keys: sk, Cfg: cfg, Site: "osaka", ID: ids["osaka"], Dir: dirs["osaka"], Audit: audit.New(cli, sk), Log: etcdtest.Logger(t)}
	if _, _, err := rcv.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	detail, err = check(ctx, now.Add(3*time.Minute))
	if err != nil || !strings.Contains(detail, "installed at osaka") {
		t.Errorf("after install: %q, %v", detail, err)
	}

	noKeys := *cfg
	noKeys.Keys = nil
	if _, err := backup.BundleKeyCheck(cli, &noKeys, "osaka", zs, "test.")(ctx, now); !backup.IsUnknown(err) {
		t.Errorf("without a keys section: %v, want unknown", err)
	}
}

func itoa(n uint16) string { return strconv.Itoa(int(n)) }
