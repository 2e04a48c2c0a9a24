// Package keysync measures key transport in the lab: the time from a new
// key file appearing in tokyo's key directory to a verified possession
// receipt from osaka in etcd (issue 5: target under 2 s median).
//
//	go test ./bench/keysync -run TestKeySync -v -count=1            # 15 keys
//	KEYSYNC_N=50 go test ./bench/keysync -run TestKeySync -v -count=1
package keysync

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/labtest"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys"
)

// target is the speed goal for the median.
const target = 2 * time.Second

func TestKeySync(t *testing.T) {
	n := 15
	if s := os.Getenv("KEYSYNC_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("KEYSYNC_N=%q", s)
		}
		n = v
	}
	l := labtest.Up(t, lab.Options{Domains: 300})
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sk := store.Keys{Prefix: l.Cfg.Etcd.Prefix}
	tokyo, _ := l.Cfg.Site("tokyo")
	zone := l.State.TLD

	var took []time.Duration
	for i := range n {
		// Spacing, not waiting: the previous round's receipts wake tokyo's
		// sender, and a key written during that wake-up would ride on it
		// and measure faster than a key appearing in a quiet directory.
		time.Sleep(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		// Watch before the key exists, so the receipt cannot be missed.
		wch := cli.Watch(ctx, keys.PathsFor(sk).ZoneReceipts("osaka", zone), clientv3.WithPrefix())
		start := time.Now()
		k, err := zonesign.GenerateKey(tokyo.KeyDir, zone, dns.ECDSAP256SHA256, false)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		done := false
		for !done {
			select {
			case <-ctx.Done():
				cancel()
				t.Fatalf("key %d (tag %d): no verified receipt from osaka within 30s", i, k.Tag)
			case wr := <-wch:
				if wr.Err() != nil {
					cancel()
					t.Fatal(wr.Err())
				}
				if len(wr.Events) == 0 {
					continue
				}
				rep, err := keys.Readiness(ctx, cli, sk, l.Cfg, "osaka", zone, []*dns.DNSKEY{k.DNSKEY})
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				done = rep.Ready
			}
		}
		d := time.Since(start)
		cancel()
		took = append(took, d)
		t.Logf("key %2d tag %5d: %s", i+1, k.Tag, d.Round(time.Millisecond))
	}
	slices.Sort(took)
	med := took[len(took)/2]
	p90 := took[min(len(took)-1, len(took)*9/10)]
	t.Logf("new key file at tokyo → verified receipt from osaka, n=%d: min %s, median %s, p90 %s, max %s (target median < %s)",
		n, took[0].Round(time.Millisecond), med.Round(time.Millisecond), p90.Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), target)
	if med >= target {
		t.Errorf("median %s is not under the %s target", med, target)
	}
}
