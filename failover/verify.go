package failover

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zoneverify"
)

// DNSVerifier checks from outside: what the public secondaries answer,
// against the version the new active site serves, and DNSSEC through a
// validating resolver.
type DNSVerifier struct {
	Cfg *config.Config
	// Site is the new active site, whose hidden primary holds the
	// version to compare with.
	Site string
}

// Verify implements Verifier.
func (v DNSVerifier) Verify(ctx context.Context, origin string, serial uint32) (string, error) {
	fo := v.Cfg.FailoverOrDefault()
	site, ok := v.Cfg.Site(v.Site)
	if !ok {
		return "", fmt.Errorf("site %s not in the config", v.Site)
	}
	var tsig string
	for _, zc := range v.Cfg.Zones {
		if dns.Fqdn(zc.Origin) == dns.Fqdn(origin) {
			tsig = zc.TSIGKey
		}
	}
	_, secret, err := v.Cfg.TSIG(tsig)
	if err != nil {
		return "", err
	}
	z, err := zonepull.Pull(ctx, site.DNSAddr, origin, dns.Fqdn(tsig), secret)
	if err != nil {
		return "", fmt.Errorf("transfer %s from %s: %w", origin, v.Site, err)
	}
	dels := zoneverify.Delegations(z)
	owners := zoneverify.Sample(dels, fo.Sample)
	var parts []string
	for _, sec := range v.Cfg.Secondary {
		got, err := zoneverify.WaitSerial(ctx, sec.Addr, origin, serial, nil)
		if err != nil {
			return "", fmt.Errorf("secondary %s (%s): %w", sec.Name, sec.Addr, err)
		}
		if mm := zoneverify.CheckSample(ctx, sec.Addr, dels, owners); len(mm) > 0 {
			return "", fmt.Errorf("secondary %s serves serial %d but %d of %d sampled delegations differ: %s", sec.Name, got, len(mm), len(owners), strings.Join(mm, "; "))
		}
		parts = append(parts, fmt.Sprintf("%s serves %d, %d delegations match", sec.Name, got, len(owners)))
	}
	if fo.Resolver == "" {
		parts = append(parts, "DNSSEC not checked (no failover.resolver configured)")
	} else {
		if err := zoneverify.Secure(ctx, fo.Resolver, origin); err != nil {
			return "", err
		}
		parts = append(parts, "DNSSEC validates (secure) at "+fo.Resolver)
	}
	return origin + ": " + strings.Join(parts, ", "), nil
}
