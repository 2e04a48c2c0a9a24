package main

import (
	"context"
	"fmt"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys"
)

// keysFacts answers the failover preflight's key question from the keys
// package's receipts, for the DNSKEY set the public secondaries serve
// (what is published is what the target must be able to sign).
type keysFacts struct {
	cfg  *config.Config
	cli  *clientv3.Client
	keys store.Keys
}

func (k keysFacts) Ready(ctx context.Context, site, zone string) (bool, string, error) {
	if k.cfg.Keys == nil {
		return false, "", fmt.Errorf("key transport is not configured (no keys: section): possession at %s unknown", site)
	}
	var dnskeys []*dns.DNSKEY
	var lastErr error
	for _, sec := range k.cfg.Secondary {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(zone), dns.TypeDNSKEY)
		m.SetEdns0(4096, true)
		m.RecursionDesired = false
		c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
		in, _, err := c.ExchangeContext(ctx, m, sec.Addr)
		if err != nil {
			lastErr = fmt.Errorf("DNSKEY of %s at secondary %s: %w", zone, sec.Name, err)
			continue
		}
		for _, rr := range in.Answer {
			if dk, ok := rr.(*dns.DNSKEY); ok {
				dnskeys = append(dnskeys, dk)
			}
		}
		if len(dnskeys) > 0 {
			break
		}
	}
	if len(dnskeys) == 0 {
		if lastErr != nil {
			return false, "", lastErr
		}
		return true, "the published zone has no DNSKEY (unsigned)", nil
	}
	rep, err := keys.Readiness(ctx, k.cli, k.keys, k.cfg, site, zone, dnskeys)
	if err != nil {
		return false, "", err
	}
	return rep.Ready, rep.String(), nil
}

// backupFacts answers the preflight's backup question from the backup
// catalog: when a restore test last passed.
type backupFacts struct{ cat *backup.Catalog }

func (b backupFacts) LastVerified(ctx context.Context) (time.Time, bool, error) {
	s, err := backup.Summarize(ctx, b.cat)
	if err != nil {
		return time.Time{}, false, err
	}
	if s.LastVerified == nil {
		return time.Time{}, false, nil
	}
	return s.LastVerified.Finished, true, nil
}
