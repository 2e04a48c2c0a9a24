package keys_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys"
	"github.com/regdr/regdr/keys/bundle"
	"github.com/regdr/regdr/keys/identity"
	"github.com/regdr/regdr/keys/inventory"
)

// world is a two-site deployment on one etcd, with a log capture that the
// secret scan reads.
type world struct {
	t      *testing.T
	cli    *clientv3.Client
	cfg    *config.Config
	sk     store.Keys
	ids    map[string]*identity.Private
	dirs   map[string]string
	logBuf *lockedBuffer
	log    *slog.Logger
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newWorld(t *testing.T) *world {
	t.Helper()
	_, cli := etcdtest.Start(t)
	w := &world{t: t, cli: cli, sk: store.Keys{Prefix: "/regdr"}, ids: map[string]*identity.Private{}, dirs: map[string]string{}, logBuf: &lockedBuffer{}}
	w.log = slog.New(slog.NewTextHandler(w.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.cfg = &config.Config{
		Deployment: "test",
		Etcd:       config.Etcd{Prefix: "/regdr"},
		Zones:      []config.Zone{{Origin: "test.", Source: "file"}},
		Keys:       &config.Keys{RequireReady: true},
	}
	for _, name := range []string{"tokyo", "osaka"} {
		f := identity.DefaultFiles(filepath.Join(t.TempDir(), "identity"))
		id, err := identity.Generate(f)
		if err != nil {
			t.Fatal(err)
		}
		w.ids[name] = id
		w.dirs[name] = filepath.Join(t.TempDir(), "keys")
		if err := os.MkdirAll(w.dirs[name], 0o700); err != nil {
			t.Fatal(err)
		}
		w.cfg.Sites = append(w.cfg.Sites, config.Site{Name: name, KeyDir: w.dirs[name], Identity: &config.SiteIdentity{
			AgeRecipient: id.Public().Age.String(), SigningPublicKey: identity.SigningString(id.Public().Signing),
			AgeIdentityFile: f.AgeIdentity, SigningKeyFile: f.SigningKey,
		}})
	}
	w.cfg.Sites = append(w.cfg.Sites, config.Site{Name: "witness", Witness: true})
	t.Cleanup(w.scanSecrets)
	return w
}

func (w *world) sender(site string) *keys.Sender {
	return &keys.Sender{KV: w.cli, Keys: w.sk, Cfg: w.cfg, Site: site, ID: w.ids[site], Backend: inventory.Dir{Path: w.dirs[site]}, Log: w.log}
}

func (w *world) receiver(site string) *keys.Receiver {
	return &keys.Receiver{KV: w.cli, Keys: w.sk, Cfg: w.cfg, Site: site, ID: w.ids[site], Dir: w.dirs[site], Audit: audit.New(w.cli, w.sk), Log: w.log}
}

func (w *world) genKey(site string, ksk bool) *zonesign.Key {
	w.t.Helper()
	k, err := zonesign.GenerateKey(w.dirs[site], "test.", dns.ECDSAP256SHA256, ksk)
	if err != nil {
		w.t.Fatal(err)
	}
	return k
}

// scanSecrets is the "no private key material in etcd or logs":
// every etcd value and every log line of the test is searched for every
// private key's file bytes, each base64 field of it, and the raw key.
func (w *world) scanSecrets() {
	t := w.t
	var needles [][]byte
	for _, dir := range w.dirs {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".private") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			needles = append(needles, b)
			for _, line := range strings.Split(string(b), "\n") {
				if name, val, ok := strings.Cut(line, ": "); ok && name == "PrivateKey" {
					val = strings.TrimSpace(val)
					needles = append(needles, []byte(val))
					raw, err := base64.StdEncoding.DecodeString(val)
					if err == nil {
						needles = append(needles, raw)
					}
				}
			}
		}
	}
	for _, id := range w.ids {
		needles = append(needles, []byte(id.Age.String()), id.Signing.Seed(), []byte(base64.StdEncoding.EncodeToString(id.Signing.Seed())))
	}
	if len(needles) == 0 {
		t.Fatal("secret scan found no private keys to look for")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := w.cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	logs := []byte(w.logBuf.String())
	for _, n := range needles {
		for _, kv := range resp.Kvs {
			if bytes.Contains(kv.Value, n) {
				t.Errorf("etcd key %s holds private key material", kv.Key)
			}
		}
		if bytes.Contains(logs, n) {
			t.Error("the log holds private key material")
		}
	}
	t.Logf("secret scan: %d needles, %d etcd values, %d log bytes", len(needles), len(resp.Kvs), len(logs))
}

func dnskeysOf(ks ...*zonesign.Key) []*dns.DNSKEY {
	var out []*dns.DNSKEY
	for _, k := range ks {
		out = append(out, k.DNSKEY)
	}
	return out
}

func TestSyncInstallProveReady(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ksk, zsk := w.genKey("tokyo", true), w.genKey("tokyo", false)

	rep, err := keys.Readiness(ctx, w.cli, w.sk, w.cfg, "osaka", "test.", dnskeysOf(ksk, zsk))
	if err != nil || rep.Ready {
		t.Fatalf("ready before any bundle: %+v %v", rep, err)
	}
	if p := rep.String(); !strings.Contains(p, "tag ") || !strings.Contains(p, "osaka") {
		t.Fatalf("not-ready message does not name the key tag and site: %s", p)
	}

	sent, err := w.sender("tokyo").Sync(ctx)
	if err != nil || len(sent) != 1 || len(sent[0].Keys) != 2 {
		t.Fatalf("sync: %+v %v", sent, err)
	}
	// A second sync while the bundle is pending sends nothing.
	if again, err := w.sender("tokyo").Sync(ctx); err != nil || len(again) != 0 {
		t.Fatalf("sync with a pending bundle: %+v %v", again, err)
	}
	outs, _, err := w.receiver("osaka").ProcessPending(ctx)
	if err != nil || len(outs) != 1 || len(outs[0].Installed) != 2 || len(outs[0].Receipts) != 2 {
		t.Fatalf("receive: %+v %v", outs, err)
	}
	if got, err := zonesign.LoadKeys(w.dirs["osaka"], "test."); err != nil || len(got) != 2 {
		t.Fatalf("osaka keys: %v %v", got, err)
	}
	rep, err = keys.Readiness(ctx, w.cli, w.sk, w.cfg, "osaka", "test.", dnskeysOf(ksk, zsk))
	if err != nil || !rep.Ready {
		t.Fatalf("not ready after receipts: %s %v", rep, err)
	}
	// Receipts stop the next sync.
	if again, err := w.sender("tokyo").Sync(ctx); err != nil || len(again) != 0 {
		t.Fatalf("sync after receipts: %+v %v", again, err)
	}

	// A rollover: only the new ZSK travels, and until it is proved the
	// DNSKEY set that carries it is not ready.
	zsk2 := w.genKey("tokyo", false)
	rep, _ = keys.Readiness(ctx, w.cli, w.sk, w.cfg, "osaka", "test.", dnskeysOf(ksk, zsk, zsk2))
	if rep.Ready || len(rep.Problems()) != 1 || !strings.Contains(rep.Problems()[0], "missing") {
		t.Fatalf("new ZSK: %s", rep)
	}
	sent, err = w.sender("tokyo").Sync(ctx)
	if err != nil || len(sent) != 1 || len(sent[0].Keys) != 1 || sent[0].Seq != 2 {
		t.Fatalf("rollover sync: %+v %v", sent, err)
	}
	if _, _, err := w.receiver("osaka").ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	rep, _ = keys.Readiness(ctx, w.cli, w.sk, w.cfg, "osaka", "test.", dnskeysOf(ksk, zsk, zsk2))
	if !rep.Ready {
		t.Fatalf("new ZSK not ready after its bundle: %s", rep)
	}

	// Status: tokyo holds (present), osaka verified, for all three keys.
	if err := keys.PublishInventory(ctx, w.cli, w.sk, inv(t, w, "tokyo")); err != nil {
		t.Fatal(err)
	}
	if err := keys.PublishInventory(ctx, w.cli, w.sk, inv(t, w, "osaka")); err != nil {
		t.Fatal(err)
	}
	ov, err := keys.Status(ctx, w.cli, w.sk, w.cfg)
	if err != nil || len(ov.Keys) != 3 {
		t.Fatalf("status: %+v %v", ov, err)
	}
	for _, k := range ov.Keys {
		if k.Sites[0].Site != "tokyo" || k.Sites[0].State != keys.StatePresent || k.Sites[1].State != keys.StateVerified {
			t.Fatalf("status of tag %d: %+v", k.Tag, k.Sites)
		}
	}
	// tokyo proves its own keys (it is the standby after a failover).
	own, err := w.receiver("tokyo").ProveOwn(ctx, inventory.Dir{Path: w.dirs["tokyo"]})
	if err != nil || len(own) != 3 || own[0].Against != "own-key" {
		t.Fatalf("prove own: %+v %v", own, err)
	}
	if rep, err := keys.Readiness(ctx, w.cli, w.sk, w.cfg, "tokyo", "test.", dnskeysOf(ksk, zsk, zsk2)); err != nil || !rep.Ready {
		t.Fatalf("tokyo not ready after proving its own keys: %s %v", rep, err)
	}
	if again, err := w.receiver("tokyo").ProveOwn(ctx, inventory.Dir{Path: w.dirs["tokyo"]}); err != nil || len(again) != 0 {
		t.Fatalf("second prove own: %d %v", len(again), err)
	}
	// The audit log holds one receipt entry per proof.
	ents, err := audit.New(w.cli, w.sk).List(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if e.Action == "keys.receipt" {
			n++
		}
	}
	if n != 6 {
		t.Fatalf("%d receipt audit entries, want 6", n)
	}
}

func inv(t *testing.T, w *world, site string) keys.Inventory {
	ks, err := keys.ListAll(context.Background(), w.cfg, inventory.Dir{Path: w.dirs[site]})
	if err != nil {
		t.Fatal(err)
	}
	return keys.Inventory{Site: site, Time: time.Now(), Keys: ks}
}

// TestReceiverRefuses: each bad bundle is refused, deleted, audited, and
// leaves nothing installed and no receipt.
func TestReceiverRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// tamper returns the etcd key and value to hand the receiver.
		tamper func(w *world, key string, env []byte) (string, []byte)
		want   error
	}{
		{"flipped ciphertext byte", func(w *world, key string, env []byte) (string, []byte) {
			return key, flip(t, env)
		}, bundle.ErrCiphertext},
		{"unknown signer", func(w *world, key string, env []byte) (string, []byte) {
			// Sealed by a stranger claiming to be tokyo.
			stranger, err := identity.Generate(identity.DefaultFiles(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			ps := pairsOf(t, w, "tokyo")
			env2, _, err := bundle.Seal(bundle.Header{From: "tokyo", To: "osaka", Seq: 1, Time: time.Now()}, ps, w.ids["osaka"].Age.Recipient(), stranger.Signing, 0)
			if err != nil {
				t.Fatal(err)
			}
			return key, env2
		}, bundle.ErrBadSignature},
		{"addressed to another site", func(w *world, key string, env []byte) (string, []byte) {
			// tokyo's genuine bundle to itself... sealed for "nagoya" but
			// dropped into osaka's inbox.
			ps := pairsOf(t, w, "tokyo")
			env2, _, err := bundle.Seal(bundle.Header{From: "tokyo", To: "nagoya", Seq: 1, Time: time.Now()}, ps, w.ids["osaka"].Age.Recipient(), w.ids["tokyo"].Signing, 0)
			if err != nil {
				t.Fatal(err)
			}
			return key, env2
		}, bundle.ErrWrongRecipient},
		{"replayed", func(w *world, key string, env []byte) (string, []byte) {
			// Accept it once in another key dir state, then replay: the
			// accepted seq is in etcd.
			if _, err := w.cli.Put(ctx, keys.PathsFor(w.sk).AcceptedSeq("osaka", "tokyo"), "1"); err != nil {
				t.Fatal(err)
			}
			return key, env
		}, bundle.ErrReplay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.genKey("tokyo", true)
			w.genKey("tokyo", false)
			sent, err := w.sender("tokyo").Sync(ctx)
			if err != nil || len(sent) != 1 {
				t.Fatalf("sync: %v %v", sent, err)
			}
			key := keys.PathsFor(w.sk).Bundle("osaka", "tokyo", sent[0].Seq)
			resp, err := w.cli.Get(ctx, key)
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("bundle not in etcd: %v", err)
			}
			k, v := tc.tamper(w, key, resp.Kvs[0].Value)
			out, err := w.receiver("osaka").Handle(ctx, k, v)
			if !errors.Is(err, tc.want) || out.Refused == "" {
				t.Fatalf("err = %v (refused %q), want %v", err, out.Refused, tc.want)
			}
			ents, _ := os.ReadDir(w.dirs["osaka"])
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "K") {
					t.Fatalf("refused bundle installed %s", e.Name())
				}
			}
			rr, _ := w.cli.Get(ctx, keys.PathsFor(w.sk).Receipts("osaka"), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if rr.Count != 0 {
				t.Fatalf("%d receipts after a refused bundle", rr.Count)
			}
			if b, _ := w.cli.Get(ctx, k, clientv3.WithCountOnly()); b.Count != 0 {
				t.Fatal("refused bundle left in etcd")
			}
			ae, _ := audit.New(w.cli, w.sk).List(ctx, 1, 10)
			if len(ae) == 0 || ae[len(ae)-1].Action != "keys.bundle.refuse" {
				t.Fatalf("refusal not audited: %+v", ae)
			}
		})
	}
}

func pairsOf(t *testing.T, w *world, site string) []inventory.Pair {
	b := inventory.Dir{Path: w.dirs[site]}
	ks, err := b.List(context.Background(), "test.")
	if err != nil {
		t.Fatal(err)
	}
	var out []inventory.Pair
	for _, k := range ks {
		p, err := b.Read(context.Background(), k.Name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func flip(t *testing.T, env []byte) []byte {
	// The ciphertext is the last base64 field; flip one bit of a decoded
	// byte in its middle and re-encode.
	i := bytes.Index(env, []byte(`"ciphertext":"`))
	if i < 0 {
		t.Fatal("no ciphertext field")
	}
	start := i + len(`"ciphertext":"`)
	end := start + bytes.IndexByte(env[start:], '"')
	ct, err := base64.StdEncoding.DecodeString(string(env[start:end]))
	if err != nil {
		t.Fatal(err)
	}
	ct[len(ct)/2] ^= 1
	out := append([]byte{}, env[:start]...)
	out = append(out, base64.StdEncoding.EncodeToString(ct)...)
	return append(out, env[end:]...)
}

// TestMismatch: a private key that does not match its DNSKEY is reported
// as mismatch by the inventory and by status, is never sent, and a
// receipt for another key under the same tag makes Readiness say
// mismatch.
func TestMismatch(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	good := w.genKey("tokyo", false)
	other := w.genKey("osaka", false)
	// osaka's .private for its key is replaced by tokyo's: same name,
	// wrong private key.
	gb, _ := os.ReadFile(strings.TrimSuffix(good.File, ".key") + ".private")
	if err := os.WriteFile(strings.TrimSuffix(other.File, ".key")+".private", gb, 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := inventory.Dir{Path: w.dirs["osaka"]}.List(ctx, "test.")
	if err != nil || len(ks) != 1 || ks[0].State != inventory.StateMismatch {
		t.Fatalf("inventory: %+v %v", ks, err)
	}
	if err := keys.PublishInventory(ctx, w.cli, w.sk, inv(t, w, "osaka")); err != nil {
		t.Fatal(err)
	}
	ov, err := keys.Status(ctx, w.cli, w.sk, w.cfg)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range ov.Keys {
		if k.Digest == ks[0].Digest {
			found = true
			if k.Sites[1].Site != "osaka" || k.Sites[1].State != keys.StateMismatch {
				t.Fatalf("status of the mismatched key: %+v", k.Sites)
			}
		}
	}
	if !found {
		t.Fatal("mismatched key not in status")
	}
	// osaka would never send it.
	lack, err := w.sender("osaka").Lacking(ctx, "tokyo")
	if err != nil || len(lack) != 0 {
		t.Fatalf("mismatched key offered for sending: %d %v", len(lack), err)
	}

	// A receipt osaka made for tokyo's key, checked against a DNSKEY that
	// shares nothing but is asked about under that receipt's tag.
	w.genKey("tokyo", true)
	if _, err := w.sender("tokyo").Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// osaka's dir has a different file under the mismatched name only;
	// tokyo's keys install fine.
	if _, _, err := w.receiver("osaka").ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	rr, _ := w.cli.Get(ctx, keys.PathsFor(w.sk).Receipt("osaka", "test.", good.Tag))
	if len(rr.Kvs) != 1 {
		t.Fatal("no receipt for tokyo's ZSK")
	}
	// The ZSK's (genuine, signed) receipt stored under the KSK's tag: a
	// site that proved one key must not count as holding another.
	ksk := w.genKey("tokyo", true)
	if _, err := w.cli.Put(ctx, keys.PathsFor(w.sk).Receipt("osaka", "test.", ksk.Tag), string(rr.Kvs[0].Value)); err != nil {
		t.Fatal(err)
	}
	rep, err := keys.Readiness(ctx, w.cli, w.sk, w.cfg, "osaka", "test.", []*dns.DNSKEY{ksk.DNSKEY, good.DNSKEY})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ready || rep.Keys[0].State != keys.StateMismatch || rep.Keys[1].State != keys.StateVerified {
		t.Fatalf("readiness with a receipt for another key: %+v", rep)
	}
}

// TestReplayAfterAccept: a bundle accepted once is refused when put back,
// by the etcd record of accepted seqs and, with that record deleted, by
// the receiver's own local record.
func TestReplayAfterAccept(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.genKey("tokyo", false)
	sent, err := w.sender("tokyo").Sync(ctx)
	if err != nil || len(sent) != 1 {
		t.Fatal(sent, err)
	}
	p := keys.PathsFor(w.sk)
	key := p.Bundle("osaka", "tokyo", sent[0].Seq)
	resp, _ := w.cli.Get(ctx, key)
	env := resp.Kvs[0].Value
	if _, _, err := w.receiver("osaka").ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	// osaka's key is removed by hand; a replay must not bring it back.
	ents, _ := os.ReadDir(w.dirs["osaka"])
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "K") {
			os.Remove(filepath.Join(w.dirs["osaka"], e.Name()))
		}
	}
	for _, tc := range []struct {
		name  string
		setup func()
	}{
		{"etcd and local record", func() {}},
		{"local record only", func() {
			if _, err := w.cli.Delete(ctx, p.AcceptedSeq("osaka", "tokyo")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		tc.setup()
		if _, err := w.cli.Put(ctx, key, string(env)); err != nil {
			t.Fatal(err)
		}
		outs, _, err := w.receiver("osaka").ProcessPending(ctx)
		if err != nil || len(outs) != 1 || !strings.Contains(outs[0].Refused, bundle.ErrReplay.Error()) {
			t.Fatalf("%s: replay: %+v %v", tc.name, outs, err)
		}
		ents, _ := os.ReadDir(w.dirs["osaka"])
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "K") {
				t.Fatalf("%s: replay installed %s", tc.name, e.Name())
			}
		}
	}
}
