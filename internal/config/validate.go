package config

import (
	"fmt"
	"math"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// tsigAlgorithms are the algorithms a tsig_keys entry may name. HMAC-MD5
// and HMAC-SHA1 are left out on purpose: RFC 8945 deprecates them.
var tsigAlgorithms = []string{"hmac-sha256", "hmac-sha384", "hmac-sha512"}

// gossipProfiles are the memberlist timer sets Agent.Gossip may name.
var gossipProfiles = []string{"wan", "lan", "local"}

// Validate checks everything that can be checked without touching the
// machine: required fields, addresses, names, references between
// sections, thresholds, keys and schedules. It reports every problem, each
// with its field path; Parse adds lines and columns, and Load adds the
// checks on files named in the config. A Config built in Go should pass
// Validate before it is marshalled for an agent.
func (c *Config) Validate() Problems {
	v := &validator{file: c.path, listen: map[string]string{}}
	v.require("deployment", c.Deployment)
	c.validateEtcd(v)
	c.validateSites(v)
	tsig := c.validateTSIGKeys(v)
	c.validateZones(v, tsig)
	c.validateSecondaries(v)
	c.validateGates(v)
	c.validateOperators(v)
	c.validateSchedules(v)
	c.validateAgent(v)
	c.validateKeys(v)
	c.validateBackup(v)
	c.validateFailover(v)
	return v.probs
}

type validator struct {
	file  string
	probs Problems
	// listen maps each listen address (folded by listenKey) to the first
	// field that named it.
	listen map[string]string
}

func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{File: v.file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) require(path, val string) bool {
	if strings.TrimSpace(val) == "" {
		v.add(path, "missing required field")
		return false
	}
	return true
}

// addr checks a required host:port field.
func (v *validator) addr(path, val string) bool {
	if !v.require(path, val) {
		return false
	}
	if err := checkAddr(val); err != nil {
		v.add(path, "bad address %q: %v", val, err)
		return false
	}
	return true
}

// listenAddr checks a host:port something of ours binds, which no other
// listener in the deployment may share: two agents on one port in the lab
// fail at start, across sites it means a copy-paste error.
func (v *validator) listenAddr(path, val string) bool {
	if !v.addr(path, val) {
		return false
	}
	v.unique(v.listen, "listen address", listenKey(val), val, path)
	return true
}

// unique records key in seen and reports it at path if it was there.
func (v *validator) unique(seen map[string]string, what, key, shown, path string) {
	if first, dup := seen[key]; dup {
		v.add(path, "duplicate %s %q (first at %s)", what, shown, first)
		return
	}
	seen[key] = path
}

func (v *validator) positive(path string, d Duration) bool {
	if d.Duration <= 0 {
		v.add(path, "duration must be positive, got %s", formatDuration(d.Duration))
		return false
	}
	return true
}

func (v *validator) oneOf(path, val string, allowed []string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.add(path, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

func (c *Config) validateEtcd(v *validator) {
	e := c.Etcd
	if len(e.Endpoints) == 0 {
		v.add("etcd.endpoints", "missing required field")
	}
	seen := map[string]string{}
	for i, ep := range e.Endpoints {
		p := fmt.Sprintf("etcd.endpoints[%d]", i)
		if !v.require(p, ep) {
			continue
		}
		if err := checkEndpoint(ep); err != nil {
			v.add(p, "bad endpoint %q: %v", ep, err)
			continue
		}
		v.unique(seen, "endpoint", strings.TrimSuffix(ep, "/"), ep, p)
		if e.TLS != nil && strings.HasPrefix(ep, "http://") {
			// The client would send the certificates nowhere and talk
			// plain text: the TLS section would be silently unused.
			v.add(p, "endpoint %q is http:// but etcd.tls is set; use https://", ep)
		}
	}
	if v.require("etcd.prefix", e.Prefix) {
		// Keys are built as prefix + "/active"; "regdr" or "/regdr/"
		// would give "regdr/active" or "/regdr//active".
		if !strings.HasPrefix(e.Prefix, "/") || (len(e.Prefix) > 1 && strings.HasSuffix(e.Prefix, "/")) {
			v.add("etcd.prefix", "prefix %q must start with / and not end with /", e.Prefix)
		}
	}
	v.positive("etcd.dial_timeout", e.DialTimeout)
	if t := e.TLS; t != nil {
		switch {
		case t.CAFile == "" && t.CertFile == "" && t.KeyFile == "":
			v.add("etcd.tls", "empty tls section: name at least ca_file, or remove it")
		case t.CertFile != "" && t.KeyFile == "":
			v.add("etcd.tls.key_file", "missing required field (cert_file is set)")
		case t.KeyFile != "" && t.CertFile == "":
			v.add("etcd.tls.cert_file", "missing required field (key_file is set)")
		}
	}
	if e.PasswordFile != "" && e.Username == "" {
		v.add("etcd.username", "missing required field (password_file is set)")
	}
	if e.Username != "" && e.PasswordFile == "" {
		v.add("etcd.password_file", "missing required field (username is set)")
	}
}

func (c *Config) validateSites(v *validator) {
	if n := len(c.DataSites()); n < 2 {
		v.add("sites", "missing site: need at least two non-witness sites, have %d", n)
	}
	names := map[string]string{}
	for i, s := range c.Sites {
		p := fmt.Sprintf("sites[%d]", i)
		if v.require(p+".name", s.Name) {
			if !isSiteName(s.Name) {
				// Site names become etcd keys and memberlist node names.
				v.add(p+".name", "site name %q may hold only letters, digits, '-' and '_'", s.Name)
			}
			v.unique(names, "site name", s.Name, s.Name, p+".name")
		}
		v.listenAddr(p+".agent_addr", s.AgentAddr)
		if v.listenAddr(p+".gossip_addr", s.GossipAddr) && unspecifiedHost(s.GossipAddr) {
			v.add(p+".gossip_addr", "bad address %q: memberlist advertises this address to peers, so it must be one they can dial", s.GossipAddr)
		}
		if s.Witness {
			for _, f := range []struct{ name, val string }{
				{"postgres", s.Postgres}, {"dns_addr", s.DNSAddr}, {"key_dir", s.KeyDir}, {"zone_dir", s.ZoneDir},
			} {
				if f.val != "" {
					v.add(p+"."+f.name, "a witness site holds only an etcd member and an agent; remove %s or set witness: false", f.name)
				}
			}
			continue
		}
		v.require(p+".postgres", s.Postgres)
		v.listenAddr(p+".dns_addr", s.DNSAddr)
		v.require(p+".key_dir", s.KeyDir)
		v.require(p+".zone_dir", s.ZoneDir)
	}
}

func isSiteName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// tsigKeyID folds TSIG key names: they are domain names, so case and the
// final dot do not distinguish them.
func tsigKeyID(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// validateTSIGKeys returns the folded names of the keys, for zones to
// check their references against.
func (c *Config) validateTSIGKeys(v *validator) map[string]string {
	names := map[string]string{}
	for i, k := range c.TSIGKeys {
		p := fmt.Sprintf("tsig_keys[%d]", i)
		if v.require(p+".name", k.Name) {
			if err := checkDomainName(k.Name); err != nil {
				v.add(p+".name", "bad key name: %v (TSIG key names are domain names)", err)
			}
			v.unique(names, "tsig key", tsigKeyID(k.Name), k.Name, p+".name")
		}
		if v.require(p+".algorithm", k.Algorithm) {
			v.oneOf(p+".algorithm", k.Algorithm, tsigAlgorithms)
		}
		v.require(p+".secret_file", k.SecretFile)
	}
	return names
}

func (c *Config) validateZones(v *validator, tsig map[string]string) {
	if len(c.Zones) == 0 {
		v.add("zones", "missing required field")
	}
	origins := map[string]string{}
	for i, z := range c.Zones {
		p := fmt.Sprintf("zones[%d]", i)
		if v.require(p+".origin", z.Origin) {
			switch {
			case !strings.HasSuffix(z.Origin, "."):
				// .se, October 2009: the generator dropped this dot and
				// every owner name became name.se.se.
				v.add(p+".origin", "origin must end with a dot: %q would be read relative to itself (write %q)", z.Origin, z.Origin+".")
			default:
				if err := checkDomainName(z.Origin); err != nil {
					v.add(p+".origin", "bad origin: %v", err)
				}
			}
			v.unique(origins, "zone", strings.ToLower(strings.TrimSuffix(z.Origin, ".")), z.Origin, p+".origin")
		}
		if v.require(p+".source", z.Source) {
			v.oneOf(p+".source", z.Source, []string{"file", "axfr"})
		}
		switch {
		case z.Source == "axfr":
			v.addr(p+".source_addr", z.SourceAddr)
		case z.Source == "file" && z.SourceAddr != "":
			v.add(p+".source_addr", "source_addr is only read with source: axfr; remove it or change source")
		}
		if v.require(p+".tsig_key", z.TSIGKey) {
			if _, ok := tsig[tsigKeyID(z.TSIGKey)]; !ok {
				v.add(p+".tsig_key", "tsig key %q is not defined in tsig_keys", z.TSIGKey)
			}
		}
	}
}

func (c *Config) validateSecondaries(v *validator) {
	names, addrs := map[string]string{}, map[string]string{}
	for i, s := range c.Secondary {
		p := fmt.Sprintf("secondaries[%d]", i)
		if v.require(p+".name", s.Name) {
			v.unique(names, "secondary", s.Name, s.Name, p+".name")
		}
		if v.addr(p+".addr", s.Addr) {
			v.unique(addrs, "secondary address", listenKey(s.Addr), s.Addr, p+".addr")
		}
	}
}

func (c *Config) validateGates(v *validator) {
	g := c.Gates
	for _, f := range []struct {
		name string
		val  float64
	}{
		{"max_removed_percent", g.MaxRemovedPercent},
		{"max_added_percent", g.MaxAddedPercent},
		{"max_changed_percent", g.MaxChangedPercent},
	} {
		// Written so NaN fails too.
		if !(f.val >= 0 && f.val <= 100) || math.IsNaN(f.val) {
			v.add("gates."+f.name, "%v is not a percentage from 0 to 100", f.val)
		}
	}
	v.positive("gates.min_signature_validity", g.MinSignatureValidity)
	if g.ReconcileTolerance < 0 {
		v.add("gates.reconcile_tolerance", "must not be negative, got %d", g.ReconcileTolerance)
	}
	for i, n := range g.RequiredNames {
		p := fmt.Sprintf("gates.required_names[%d]", i)
		if !v.require(p, n) {
			continue
		}
		if !strings.HasSuffix(n, ".") {
			v.add(p, "required name must end with a dot: %q is relative (write %q)", n, n+".")
			continue
		}
		if err := checkDomainName(n); err != nil {
			v.add(p, "bad name: %v", err)
		}
	}
}

func (c *Config) validateOperators(v *validator) {
	names, keys := map[string]string{}, map[string]string{}
	for i, o := range c.Operators {
		p := fmt.Sprintf("operators[%d]", i)
		if v.require(p+".name", o.Name) {
			v.unique(names, "operator", o.Name, o.Name, p+".name")
		}
		if !v.require(p+".ssh_public_key", o.SSHPublicKey) {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o.SSHPublicKey))
		if err != nil {
			v.add(p+".ssh_public_key", "bad ssh public key: %v (want one authorized_keys line, like \"ssh-ed25519 AAAA... name\")", err)
			continue
		}
		// Two operators with one key would let one person give both
		// approvals a gate override needs.
		fp := ssh.FingerprintSHA256(pub)
		if first, dup := keys[fp]; dup {
			v.add(p+".ssh_public_key", "same key as %s (%s): two-person approval needs two keys", first, fp)
			continue
		}
		keys[fp] = p
	}
}

func (c *Config) validateSchedules(v *validator) {
	s := c.Schedules
	if s.BackupVerify != "" {
		if err := checkCron(s.BackupVerify); err != nil {
			v.add("schedules.backup_verify", "%v", err)
		}
	}
	for i, d := range s.Drills {
		p := fmt.Sprintf("schedules.drills[%d]", i)
		v.require(p+".scenario", d.Scenario)
		if v.require(p+".cron", d.Cron) {
			if err := checkCron(d.Cron); err != nil {
				v.add(p+".cron", "%v", err)
			}
		}
	}
}

func (c *Config) validateAgent(v *validator) {
	a := c.Agent
	v.positive("agent.heartbeat_interval", a.HeartbeatInterval)
	if v.positive("agent.lease_ttl", a.LeaseTTL) && a.LeaseTTL.Duration < time.Second {
		// etcd grants leases in whole seconds.
		v.add("agent.lease_ttl", "lease_ttl must be at least 1s (etcd leases count whole seconds), got %s", formatDuration(a.LeaseTTL.Duration))
	}
	if v.require("agent.gossip", a.Gossip) {
		v.oneOf("agent.gossip", a.Gossip, gossipProfiles)
	}
}
