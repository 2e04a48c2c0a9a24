package membership

import (
	"net"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/status"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	// memberlist binds UDP and TCP on the same port; TCP-free is the
	// stricter check on loopback.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

func peer(ps []status.Peer, site string) status.Peer {
	for _, p := range ps {
		if p.Site == site {
			return p
		}
	}
	return status.Peer{}
}

func TestGossipMetaAndFailure(t *testing.T) {
	sites := []string{"tokyo", "osaka", "witness"}
	addrs := map[string]string{}
	for _, s := range sites {
		addrs[s] = freeAddr(t)
	}
	gs := map[string]*Gossip{}
	for _, s := range sites {
		var peers []string
		for _, o := range sites {
			if o != s {
				peers = append(peers, addrs[o])
			}
		}
		g, err := Start(Options{Site: s, Bind: addrs[s], Peers: peers, Profile: "local"})
		if err != nil {
			t.Fatal(err)
		}
		gs[s] = g
	}
	defer func() {
		for _, s := range []string{"tokyo", "witness"} {
			gs[s].Close()
		}
	}()
	for _, g := range gs {
		g.Rejoin()
	}
	if err := gs["osaka"].SetMeta(status.Meta{Site: "osaka", Role: "standby", Epoch: 3, Serials: map[string]uint32{"test.": 42}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "tokyo to see osaka's meta", func() bool {
		p := peer(gs["tokyo"].Peers(sites), "osaka")
		return p.Alive && p.Meta != nil && p.Meta.Serials["test."] == 42 && p.Meta.Epoch == 3
	})
	if n := gs["tokyo"].AliveCount(); n != 2 {
		t.Fatalf("tokyo sees %d alive peers, want 2", n)
	}
	// A crash, not a clean leave: peers must detect it by probing.
	if err := gs["osaka"].ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "tokyo to see osaka dead", func() bool {
		return !peer(gs["tokyo"].Peers(sites), "osaka").Alive
	})
	t.Logf("osaka seen down after %s", time.Since(start).Round(time.Millisecond))
	if p := peer(gs["tokyo"].Peers(sites), "witness"); !p.Alive {
		t.Fatalf("witness should still be alive: %+v", p)
	}
}

func TestConfigProfiles(t *testing.T) {
	for _, p := range []string{"", "wan", "lan", "local"} {
		if _, err := Config(p); err != nil {
			t.Errorf("profile %q: %v", p, err)
		}
	}
	if _, err := Config("fast"); err == nil {
		t.Error("unknown profile accepted")
	}
}
