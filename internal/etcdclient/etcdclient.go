// Package etcdclient dials the coordination cluster described in the
// deployment config, with the same TLS and timeout rules for the agent and
// the operator CLI.
package etcdclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regdr/regdr/internal/config"
)

// Dial returns a client for the configured endpoints. It does not wait for
// a connection: callers bound each request with their own context, so an
// unreachable etcd is a fast, reportable condition instead of a hang.
func Dial(c *config.Config) (*clientv3.Client, error) {
	e := c.Etcd
	timeout := e.DialTimeout.Duration
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	cc := clientv3.Config{
		Endpoints:   e.Endpoints,
		DialTimeout: timeout,
		// etcd's client logs every reconnect attempt at warn level; the
		// caller reports reachability itself.
		Logger: zap.NewNop(),
	}
	if e.TLS != nil {
		tc, err := tlsConfig(c, e.TLS)
		if err != nil {
			return nil, err
		}
		cc.TLS = tc
	}
	if e.Username != "" {
		pw, err := readSecret(c.Resolve(e.PasswordFile))
		if err != nil {
			return nil, fmt.Errorf("etcd password_file: %w", err)
		}
		cc.Username, cc.Password = e.Username, pw
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(e.Endpoints, ","), err)
	}
	return cli, nil
}

func tlsConfig(c *config.Config, t *config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(c.Resolve(t.CAFile))
		if err != nil {
			return nil, fmt.Errorf("etcd tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd tls ca_file %s: no PEM certificates", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.Resolve(t.CertFile), c.Resolve(t.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("etcd tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
