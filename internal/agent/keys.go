package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/zone"
)

// GateKeyReadiness is the key-readiness gate's name.
const GateKeyReadiness = "key-readiness"

// extraGates are gates beyond the zone content ones: the key-readiness
// gate when the config asks for it.
func (a *Agent) extraGates() []gates.Gate {
	if a.cfg.Keys == nil || !a.cfg.Keys.RequireReady {
		return nil
	}
	return []gates.Gate{keyGate{a}}
}

// keyGate blocks a version that publishes a DNSKEY some standby data site
// has not proved it can sign with (.se 2009: the one signer was out of
// reach; a rollover must never leave the DR site unable to sign). It
// reads etcd when it runs, so a receipt that arrives lets the next
// recheck through.
type keyGate struct{ a *Agent }

func (keyGate) Name() string { return GateKeyReadiness }

func (g keyGate) Check(ctx context.Context, _ *gates.Index, in *gates.Input) gates.Result {
	a := g.a
	dks := zoneDNSKEYs(in.Zone)
	if len(dks) == 0 {
		return gates.Result{Status: gates.StatusSkip, Reason: "unsigned zone: no DNSKEY to be ready for"}
	}
	if a.etcd == nil {
		return gates.Result{Status: gates.StatusFail, Reason: "etcd not connected: receipts cannot be read"}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rec, found, err := store.GetActive(ctx, a.etcd, a.keys)
	if err != nil {
		// Fail closed: without receipts nothing says the standby can sign.
		return gates.Result{Status: gates.StatusFail, Reason: fmt.Sprintf("cannot read the active-site record: %v", err)}
	}
	active := a.site.Name
	if found {
		active = rec.Site
	}
	var res gates.Result
	var checked []string
	for _, s := range a.cfg.DataSites() {
		if s.Name == active {
			continue
		}
		checked = append(checked, s.Name)
		rep, err := keys.Readiness(ctx, a.etcd, a.keys, a.cfg, s.Name, in.Zone.Origin, dks)
		if err != nil {
			return gates.Result{Status: gates.StatusFail, Reason: err.Error()}
		}
		for _, k := range rep.Keys {
			if k.State == keys.StateVerified {
				continue
			}
			role := "ZSK"
			if k.KSK {
				role = "KSK"
			}
			res.Total++
			res.Findings = append(res.Findings, gates.Finding{
				Gate: GateKeyReadiness, Kind: "key-not-ready-" + k.State, Name: in.Zone.Origin, Type: "DNSKEY",
				Msg: fmt.Sprintf("DNSKEY tag %d (%s, algorithm %d, digest %.12s) is %s at %s: %s; the zone would publish a key that site cannot sign with",
					k.Tag, role, k.Algorithm, k.Digest, k.State, s.Name, k.Detail),
			})
		}
	}
	if res.Total > 0 {
		res.Status = gates.StatusFail
		res.Reason = res.Findings[0].Msg
		if res.Total > 1 {
			res.Reason += fmt.Sprintf(" (and %d more)", res.Total-1)
		}
		return res
	}
	return gates.Result{Status: gates.StatusPass, Reason: fmt.Sprintf("%d DNSKEY(s) proved at %s", len(dks), strings.Join(checked, ", "))}
}

// startKeys starts key transport at a data site with an identity: every
// such site opens the bundles addressed to it and proves the keys; the
// active site sends the keys the others lack, on a key directory change
// (file watch) and on a periodic sweep, and re-judges blocked versions when
// a receipt arrives.
func (a *Agent) startKeys(ctx context.Context, wg *sync.WaitGroup) {
	if a.site.Witness || a.cfg.Keys == nil || a.site.Identity == nil || a.etcd == nil {
		return
	}
	id, err := keys.LoadIdentity(a.cfg, a.site.Name)
	if err != nil {
		a.log.Error("key transport disabled", "err", err)
		a.setKeys(func(k *status.KeysState) { k.Error = err.Error() })
		return
	}
	backend := inventory.Dir{Path: a.site.KeyDir}
	recv := &keys.Receiver{
		KV: a.etcd, Keys: a.keys, Cfg: a.cfg, Site: a.site.Name, ID: id, Dir: a.site.KeyDir,
		Published: a.publishedDNSKEYs, Audit: audit.New(a.etcd, a.keys), Log: a.log.With("part", "keys"),
	}
	send := &keys.Sender{KV: a.etcd, Keys: a.keys, Cfg: a.cfg, Site: a.site.Name, ID: id, Backend: backend, Log: a.log.With("part", "keys"), Audit: audit.New(a.etcd, a.keys)}
	sweep := make(chan struct{}, 1)
	poke := func() {
		select {
		case sweep <- struct{}{}:
		default:
		}
	}
	wg.Add(3)
	go func() { defer wg.Done(); a.receiveBundles(ctx, recv) }()
	go func() { defer wg.Done(); a.watchReceipts(ctx, poke) }()
	go func() { defer wg.Done(); a.sendKeys(ctx, send, recv, backend, sweep) }()
}

// receiveBundles opens what is pending, then follows the bundle prefix.
func (a *Agent) receiveBundles(ctx context.Context, r *keys.Receiver) {
	prefix := keys.PathsFor(a.keys).Bundles(a.site.Name)
	for ctx.Err() == nil {
		outs, rev, err := r.ProcessPending(ctx)
		a.noteOutcomes(outs, err)
		if err != nil && rev == 0 {
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range a.etcd.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				a.log.Warn("bundle watch", "err", wr.Err())
				break
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				o, err := r.Handle(ctx, string(ev.Kv.Key), ev.Kv.Value)
				a.noteOutcomes([]keys.Outcome{o}, err)
			}
		}
		cancel()
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return
		}
	}
}

func (a *Agent) noteOutcomes(outs []keys.Outcome, err error) {
	if len(outs) == 0 && err == nil {
		return
	}
	a.setKeys(func(k *status.KeysState) {
		for _, o := range outs {
			k.LastAt = time.Now()
			if o.Refused != "" {
				k.LastBundle = fmt.Sprintf("refused %s seq %d: %s", o.Header.From, o.Header.Seq, o.Refused)
				continue
			}
			k.LastBundle = fmt.Sprintf("opened %s seq %d: %d installed, %d already present, %d proved",
				o.Header.From, o.Header.Seq, len(o.Installed), len(o.Present), len(o.Receipts))
		}
		k.Error = ""
		if err != nil {
			k.Error = err.Error()
		}
	})
}

// watchReceipts wakes the sender (there may be more to send) and, at the
// active site, the zone loop (a version blocked by the key-readiness gate
// may now pass) whenever a receipt is written.
func (a *Agent) watchReceipts(ctx context.Context, poke func()) {
	prefix := keys.PathsFor(a.keys).AllReceipts()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range a.etcd.Watch(wctx, prefix, clientv3.WithPrefix()) {
			if wr.Err() != nil {
				break
			}
			if len(wr.Events) > 0 {
				poke()
				a.requestRecheck()
			}
		}
		cancel()
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return
		}
	}
}

// sendKeys watches the key directory and sweeps it periodically: it
// publishes the site's inventory and, at the active site, sends bundles.
func (a *Agent) sendKeys(ctx context.Context, s *keys.Sender, r *keys.Receiver, b inventory.Backend, sweep chan struct{}) {
	w, err := fsnotify.NewWatcher()
	var events chan fsnotify.Event
	var errs chan error
	if err == nil {
		defer w.Close()
		if err := w.Add(a.site.KeyDir); err != nil {
			a.log.Warn("key directory watch: sweeping only", "dir", a.site.KeyDir, "err", err)
		} else {
			events, errs = w.Events, w.Errors
		}
	} else {
		a.log.Warn("key directory watch: sweeping only", "err", err)
	}
	t := time.NewTicker(a.cfg.Keys.Interval())
	defer t.Stop()
	// debounce: a key is written as temp files and renames; act once the
	// burst is over.
	debounce := time.NewTimer(0)
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			// Only a .key appearing completes a pair (the .private is
			// written first); temp files and our own seq file are noise.
			if strings.HasSuffix(ev.Name, ".key") {
				debounce.Reset(20 * time.Millisecond)
			}
		case err := <-errs:
			a.log.Warn("key directory watch", "err", err)
		case <-sweep:
			debounce.Reset(0)
		case <-t.C:
			debounce.Reset(0)
		case <-debounce.C:
			a.syncKeys(ctx, s, r, b)
		}
	}
}

func (a *Agent) syncKeys(ctx context.Context, s *keys.Sender, r *keys.Receiver, b inventory.Backend) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ks, err := keys.ListAll(ctx, a.cfg, b)
	inv := keys.Inventory{Site: a.site.Name, Time: time.Now(), Keys: ks}
	if err != nil {
		inv.Error = err.Error()
	}
	if perr := keys.PublishInventory(ctx, a.etcd, a.keys, inv); perr != nil {
		a.log.Warn("publish key inventory", "err", perr)
	}
	var problem string
	if err == nil {
		// Send first: the standby's proof is what a blocked version
		// waits for; our own receipts only matter after a failover.
		defer func() {
			if _, perr := r.ProveOwn(ctx, b); perr != nil {
				a.log.Warn("prove own keys", "err", perr)
			}
		}()
	}
	if err == nil {
		// A key deleted here must stop counting as proved (a failover
		// would find this site unable to sign).
		if dropped, derr := r.DropStale(ctx, ks); derr != nil {
			a.log.Warn("withdraw stale key receipts", "err", derr)
		} else if len(dropped) > 0 {
			problem = "keys gone from the key directory, receipts withdrawn: " + strings.Join(dropped, "; ")
		}
	}
	if err != nil {
		problem = err.Error()
	} else if a.role() == "active" {
		sent, serr := s.Sync(ctx)
		if serr != nil {
			problem = serr.Error()
			a.log.Warn("key sync", "err", serr)
		}
		for _, h := range sent {
			a.setKeys(func(k *status.KeysState) {
				k.LastBundle, k.LastAt = fmt.Sprintf("sent %s seq %d: %s", h.To, h.Seq, strings.Join(h.Keys, ", ")), time.Now()
			})
		}
	}
	a.setKeys(func(k *status.KeysState) {
		k.Keys = nil
		for _, x := range ks {
			k.Keys = append(k.Keys, status.KeyInfo{Zone: x.Zone, Tag: x.Tag, Algorithm: x.Algorithm, KSK: x.KSK, Digest: x.Digest, State: x.State})
		}
		k.Error = problem
		k.UpdatedAt = time.Now()
	})
}

// zoneDNSKEYs is keys.DNSKEYs of z. Only the DNSKEY records are gathered
// into a slice: z may hold millions of records.
func zoneDNSKEYs(z *zone.Zone) []*dns.DNSKEY {
	var rrs []dns.RR
	for _, rr := range z.All() {
		if rr.Header().Rrtype == dns.TypeDNSKEY {
			rrs = append(rrs, rr)
		}
	}
	return keys.DNSKEYs(z.Origin, rrs)
}

// publishedDNSKEYs is the DNSKEY set this site serves for zone now.
func (a *Agent) publishedDNSKEYs(zone string) ([]*dns.DNSKEY, string, bool) {
	if a.dns == nil {
		return nil, "", false
	}
	z := a.dns.Zone(dns.Fqdn(zone))
	if z == nil {
		return nil, "", false
	}
	return zoneDNSKEYs(z), fmt.Sprintf("zone %s serial %d", z.Origin, z.Serial), true
}

func (a *Agent) setKeys(f func(*status.KeysState)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Copy on write: Status hands out a.st by value, and a reader may
	// still be encoding the previous KeysState.
	n := &status.KeysState{}
	if a.st.Keys != nil {
		*n = *a.st.Keys
		n.Keys = slices.Clone(n.Keys)
	}
	f(n)
	a.st.Keys = n
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
