// Package knotlab runs Knot DNS as the lab's public secondary: it
// transfers zones from the sites' hidden primaries (zoneserve) when told
// by NOTIFY, like the registry's real public name servers would.
//
// Everything the daemon writes (config, control socket, PID file, zone
// journal, timers, log) lives under Config.Dir, so a lab or a test owns
// its Knot completely and removes it with the directory.
//
// The config syntax is that of Knot DNS 3.2 (Debian 12): notably "master"
// in the zone section (renamed "primary" only later).
package knotlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"
)

// Paths are the Knot DNS executables.
type Paths struct {
	Knotd, Knotc, Kdig string
}

// ErrNotFound is returned by Find when Knot DNS is not installed.
var ErrNotFound = errors.New("Knot DNS not found: install it with: apt-get install -y knot knot-dnsutils")

// Find locates knotd, knotc and kdig on PATH or in the Debian locations
// (knotd and knotc live in /usr/sbin, which a non-login PATH may lack).
func Find() (Paths, error) {
	find := func(name string) (string, error) {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", fmt.Errorf("%w (missing %s)", ErrNotFound, name)
	}
	var p Paths
	var err error
	if p.Knotd, err = find("knotd"); err != nil {
		return Paths{}, err
	}
	if p.Knotc, err = find("knotc"); err != nil {
		return Paths{}, err
	}
	if p.Kdig, err = find("kdig"); err != nil {
		return Paths{}, err
	}
	return p, nil
}

// Config describes one Knot secondary.
type Config struct {
	// Dir holds everything the daemon writes; created if missing.
	Dir string
	// Listen is the address Knot answers on (UDP and TCP).
	Listen netip.AddrPort
	// Zones are the zones it is secondary for.
	Zones []ZoneConf
	// TSIGName, TSIGAlgorithm (e.g. "hmac-sha256") and TSIGSecret
	// (base64) are the key used for transfers from the primaries and
	// required on NOTIFY from them.
	TSIGName, TSIGAlgorithm, TSIGSecret string
}

// ZoneConf is one zone: a secondary (Primaries) or, with File, a primary
// Knot loads from a file (standing in for a registry's own signer that
// regdr transfers from).
type ZoneConf struct {
	Origin string
	// Primaries are tried in order for transfers (Knot's master list);
	// NOTIFY is accepted from their addresses.
	Primaries []netip.AddrPort
	// File makes the zone a primary zone loaded from this file.
	File string
	// Notify are told (with the TSIG key) of every new serial.
	Notify []netip.AddrPort
	// IXFR (with File) keeps the differences between the versions of
	// the file Knot loads, and answers IXFR from them, as a registry's
	// signer does.
	IXFR bool
}

var tsigAlgorithms = map[string]bool{
	"hmac-sha1": true, "hmac-sha224": true, "hmac-sha256": true, "hmac-sha384": true, "hmac-sha512": true,
}

// Validate checks c. Names and paths end up in a config file, so anything
// that could break its syntax is refused here rather than quoted.
func (c Config) Validate() error {
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("knot config: Dir %q must be an absolute path", c.Dir)
	}
	if strings.ContainsAny(c.Dir, "\"\n\r\\#") {
		return fmt.Errorf("knot config: Dir %q contains a character Knot's config cannot hold", c.Dir)
	}
	if !c.Listen.IsValid() || c.Listen.Port() == 0 {
		return fmt.Errorf("knot config: Listen %v needs an address and a port", c.Listen)
	}
	if len(c.Zones) == 0 {
		return errors.New("knot config: no zones")
	}
	if _, ok := dns.IsDomainName(c.TSIGName); !ok || c.TSIGName == "" || strings.ContainsAny(c.TSIGName, " \"\\#") {
		return fmt.Errorf("knot config: TSIG key name %q is not a plain domain name", c.TSIGName)
	}
	if !tsigAlgorithms[strings.ToLower(c.TSIGAlgorithm)] {
		return fmt.Errorf("knot config: TSIG algorithm %q is not one of hmac-sha1/224/256/384/512", c.TSIGAlgorithm)
	}
	if c.TSIGSecret == "" || strings.Trim(c.TSIGSecret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != "" {
		// the secret is never echoed
		return fmt.Errorf("knot config: TSIG secret for %s is not base64", c.TSIGName)
	}
	seen := map[string]bool{}
	for _, z := range c.Zones {
		o := dns.CanonicalName(z.Origin)
		if _, ok := dns.IsDomainName(z.Origin); !ok || z.Origin == "" || strings.ContainsAny(z.Origin, " \"\\#") {
			return fmt.Errorf("knot config: zone %q is not a plain domain name", z.Origin)
		}
		if seen[o] {
			return fmt.Errorf("knot config: zone %s listed twice", o)
		}
		seen[o] = true
		switch {
		case z.File != "" && len(z.Primaries) > 0:
			return fmt.Errorf("knot config: zone %s: a zone file and primaries are exclusive", o)
		case z.File != "" && (!filepath.IsAbs(z.File) || strings.ContainsAny(z.File, "\"\n\r\\#")):
			return fmt.Errorf("knot config: zone %s: file %q must be an absolute plain path", o, z.File)
		case z.File == "" && len(z.Primaries) == 0:
			return fmt.Errorf("knot config: zone %s has no primaries", o)
		}
		for _, p := range z.Notify {
			if !p.IsValid() || p.Port() == 0 {
				return fmt.Errorf("knot config: zone %s: notify target %v needs an address and a port", o, p)
			}
		}
		for _, p := range z.Primaries {
			if !p.IsValid() || p.Port() == 0 {
				return fmt.Errorf("knot config: zone %s: primary %v needs an address and a port", o, p)
			}
		}
	}
	return nil
}

// ConfigPath is where WriteConfig puts the config for c.
func (c Config) ConfigPath() string { return filepath.Join(c.Dir, "knot.conf") }

// LogPath is Knot's log file.
func (c Config) LogPath() string { return filepath.Join(c.Dir, "knot.log") }

// WriteConfig writes the knot.conf for c under c.Dir, mode 0600 because it
// holds the TSIG secret, and returns its path.
func WriteConfig(c Config) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	for _, d := range []string{c.Dir, filepath.Join(c.Dir, "run"), filepath.Join(c.Dir, "storage"), filepath.Join(c.Dir, "zones")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("knot config: %w", err)
		}
	}
	path := c.ConfigPath()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(render(c)), 0o600); err != nil {
		return "", fmt.Errorf("knot config: write %s: %w", tmp, err)
	}
	// WriteFile keeps the mode of an existing file; make sure.
	if err := os.Chmod(tmp, 0o600); err != nil {
		return "", fmt.Errorf("knot config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("knot config: %w", err)
	}
	return path, nil
}

// render produces the config text. Output is deterministic for a given c
// (remotes are numbered in order of first appearance), so it can be
// compared with a golden file.
func render(c Config) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	key := dns.CanonicalName(c.TSIGName)
	dir := c.Dir

	p("# Written by regdr internal/knotlab; holds a TSIG secret (mode 0600).")
	p("server:")
	p("    rundir: \"%s/run\"", dir)
	p("    listen: %s@%d", c.Listen.Addr(), c.Listen.Port())
	// One worker of each kind: the lab runs on small machines next to
	// two PostgreSQL clusters and etcd.
	p("    udp-workers: 1")
	p("    tcp-workers: 1")
	p("    background-workers: 1")
	p("    identity: \"\"")
	p("    version: \"\"")
	p("")
	p("log:")
	p("  - target: \"%s\"", c.LogPath())
	p("    any: info")
	p("")
	p("database:")
	p("    storage: \"%s/storage\"", dir)
	p("")
	p("key:")
	p("  - id: %s", key)
	p("    algorithm: %s", strings.ToLower(c.TSIGAlgorithm))
	p("    secret: \"%s\"", c.TSIGSecret)
	p("")

	// Remotes, one per distinct primary address, in order of first use.
	ids := map[netip.AddrPort]string{}
	var order []netip.AddrPort
	for _, z := range c.Zones {
		for _, a := range z.Primaries {
			if _, ok := ids[a]; !ok {
				ids[a] = fmt.Sprintf("primary%d", len(order)+1)
				order = append(order, a)
			}
		}
	}
	for _, z := range c.Zones {
		for _, a := range z.Notify {
			if _, ok := ids[a]; !ok {
				ids[a] = fmt.Sprintf("notify%d", len(order)+1)
				order = append(order, a)
			}
		}
	}
	p("remote:")
	for _, a := range order {
		p("  - id: %s", ids[a])
		p("    address: %s@%d", a.Addr(), a.Port())
		p("    key: %s", key)
	}
	p("")

	p("acl:")
	for i, z := range c.Zones {
		if z.File != "" {
			continue
		}
		var addrs []string
		have := map[netip.Addr]bool{}
		for _, a := range z.Primaries {
			if !have[a.Addr()] {
				have[a.Addr()] = true
				addrs = append(addrs, a.Addr().String())
			}
		}
		// NOTIFY only from the primaries' addresses and with the key:
		// a forged NOTIFY costs a SOA query, but an unauthenticated
		// one is still a door nobody needs open.
		p("  - id: notify%d", i+1)
		p("    address: [%s]", strings.Join(addrs, ", "))
		p("    key: %s", key)
		p("    action: notify")
	}
	// Transfers out with the key, from anywhere: drills and monitoring
	// compare what the secondary actually serves with what was
	// published (INCIDENTS.md, RIPE NCC 2017: watch the published output).
	p("  - id: transfer_with_key")
	p("    key: %s", key)
	p("    action: transfer")
	p("")

	p("template:")
	p("  - id: default")
	p("    storage: \"%s/zones\"", dir)
	// The zone lives in the journal only: no zone file to go stale or
	// be half-written, and a restart serves the last transferred
	// version.
	p("    zonefile-sync: -1")
	p("    zonefile-load: none")
	p("    journal-content: all")
	// A whole 1,000,000-delegation zone is ~330 MB in the journal; the
	// 3.2 default cap refuses to store it ("not enough space provided").
	p("    journal-max-usage: 4G")
	p("")

	p("zone:")
	for i, z := range c.Zones {
		if z.File != "" {
			var notify []string
			for _, a := range z.Notify {
				notify = append(notify, ids[a])
			}
			p("  - domain: %s", dns.CanonicalName(z.Origin))
			p("    file: \"%s\"", z.File)
			if z.IXFR {
				p("    zonefile-load: difference")
				p("    journal-content: changes")
			} else {
				p("    zonefile-load: whole")
				p("    journal-content: none")
			}
			if len(notify) > 0 {
				p("    notify: [%s]", strings.Join(notify, ", "))
			}
			p("    acl: [transfer_with_key]")
			continue
		}
		var masters []string
		for _, a := range z.Primaries {
			masters = append(masters, ids[a])
		}
		p("  - domain: %s", dns.CanonicalName(z.Origin))
		p("    master: [%s]", strings.Join(masters, ", "))
		p("    acl: [notify%d, transfer_with_key]", i+1)
	}
	return b.String()
}
