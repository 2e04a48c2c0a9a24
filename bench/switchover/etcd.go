package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd runs a one-member etcd in this process on loopback. Unlike the
// regdr lab's member (internal/etcdserver), it serves etcd's HTTP/JSON
// gateway: Patroni's etcd3 client speaks that, not gRPC.
func startEtcd(ctx context.Context, dir string) (*embed.Etcd, string, error) {
	cport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	pport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", cport))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", pport))
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = "bench=" + pu.String()
	cfg.InitialClusterToken = "regdr-bench"
	cfg.EnableGRPCGateway = true
	// The same raft timing as the regdr lab, so neither side of the
	// comparison gets a faster etcd.
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-ctx.Done():
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready: %w", ctx.Err())
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after 30s")
	}
	return e, cu.Host, nil
}

// freePort is a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
