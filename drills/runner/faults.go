package runner

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/agent"
	"github.com/regdr/regdr/internal/zonesign"
)

// zoneFile is where the lab's generator writes the zone: the active
// site's zone_dir, read by that site's agent.
func (e *LabEnv) zoneFile() (string, error) {
	s, err := e.site(e.L.State.Active)
	if err != nil {
		return "", err
	}
	return agent.ZoneFile(s.ZoneDir, e.L.State.TLD), nil
}

// zoneLines reads the current zone file: one record per line, absolute
// names, as zonesign.WriteZone writes it. It returns the lines and the
// index of the apex SOA.
func (e *LabEnv) zoneLines() (path string, lines []string, soa int, err error) {
	path, err = e.zoneFile()
	if err != nil {
		return "", nil, 0, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, 0, fmt.Errorf("read the current zone: %w", err)
	}
	soa = -1
	origin := dns.CanonicalName(e.L.State.TLD)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Fields(l)
		if len(f) >= 4 && f[3] == "SOA" && dns.CanonicalName(f[0]) == origin && soa < 0 {
			soa = len(lines)
		}
		lines = append(lines, l)
	}
	if soa < 0 {
		return "", nil, 0, fmt.Errorf("%s has no SOA at %s", path, origin)
	}
	return path, lines, soa, nil
}

// bumpSOA returns the SOA line with the serial one higher, so a broken
// version is "newer" and passes the serial gate: the drill tests the other
// gates, as a real broken generator run would.
func bumpSOA(line string) (string, uint32, error) {
	rr, err := dns.NewRR(line)
	if err != nil {
		return "", 0, fmt.Errorf("parse SOA %q: %w", line, err)
	}
	soa, ok := rr.(*dns.SOA)
	if !ok {
		return "", 0, fmt.Errorf("not an SOA: %q", line)
	}
	soa.Serial++
	return soa.String(), soa.Serial, nil
}

// writeAtomic replaces path the way the generator does (temp file in the
// same directory, then rename), so the agent never reads a half-written
// file: a drill's broken zone is broken by content, not by the write.
func writeAtomic(path string, lines []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".drill-*.zone")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// trailingDot writes the current zone with n delegations' owner names
// missing their trailing dot (.se 2009): read against the origin they
// become name.test.test.
func (e *LabEnv) trailingDot(_ context.Context, n int) (string, error) {
	path, lines, soa, err := e.zoneLines()
	if err != nil {
		return "", err
	}
	origin := dns.CanonicalName(e.L.State.TLD)
	var owners []string
	seen := map[string]bool{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 4 && f[3] == "NS" && dns.CanonicalName(f[0]) != origin && !seen[f[0]] {
			seen[f[0]] = true
			owners = append(owners, f[0])
		}
	}
	if len(owners) == 0 {
		return "", errors.New("trailing-dot: the zone has no delegations to break")
	}
	sort.Strings(owners)
	owners = owners[:min(n, len(owners))]
	broken := map[string]bool{}
	for _, o := range owners {
		broken[o] = true
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l
		f := strings.Fields(l)
		if len(f) > 0 && broken[f[0]] {
			out[i] = strings.TrimSuffix(f[0], ".") + l[len(f[0]):]
		}
	}
	var serial uint32
	if out[soa], serial, err = bumpSOA(lines[soa]); err != nil {
		return "", err
	}
	if err := writeAtomic(path, out); err != nil {
		return "", fmt.Errorf("trailing-dot: write %s: %w", path, err)
	}
	return fmt.Sprintf("serial %d: %d owner names without trailing dot (e.g. %s → %s%s)", serial, len(owners),
		owners[0], owners[0], strings.TrimSuffix(origin, ".")+"."), nil
}

// partialZone writes the first fraction of the current zone's records
// (.hk 2004: the generator died half way and the truncated output went
// out). The apex SOA is kept first, with a newer serial.
func (e *LabEnv) partialZone(_ context.Context, fraction float64) (string, error) {
	path, lines, soa, err := e.zoneLines()
	if err != nil {
		return "", err
	}
	head, serial, err := bumpSOA(lines[soa])
	if err != nil {
		return "", err
	}
	rest := append(append([]string{}, lines[:soa]...), lines[soa+1:]...)
	keep := int(float64(len(rest)) * fraction)
	out := append([]string{head}, rest[:keep]...)
	if err := writeAtomic(path, out); err != nil {
		return "", fmt.Errorf("partial-zone: write %s: %w", path, err)
	}
	return fmt.Sprintf("serial %d: %d of %d records written", serial, len(out), len(lines)), nil
}

// emptyZonelet signs a zone holding only the apex (SOA, NS and the name
// servers' addresses) with the active site's keys (RIPE 2017: validly
// signed, empty).
func (e *LabEnv) emptyZonelet(ctx context.Context) (string, error) {
	path, lines, _, err := e.zoneLines()
	if err != nil {
		return "", err
	}
	origin := dns.CanonicalName(e.L.State.TLD)
	var rrs []dns.RR
	nsNames := map[string]bool{}
	nsec3 := false
	var addrs []dns.RR
	var serial uint32
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		if f[3] == "NSEC3PARAM" {
			nsec3 = true
		}
		owner := dns.CanonicalName(f[0])
		switch {
		case owner == origin && (f[3] == "SOA" || f[3] == "NS"):
			rr, err := dns.NewRR(l)
			if err != nil {
				return "", fmt.Errorf("empty-zonelet: %w", err)
			}
			if soa, ok := rr.(*dns.SOA); ok {
				soa.Serial++
				serial = soa.Serial
			}
			if ns, ok := rr.(*dns.NS); ok {
				nsNames[dns.CanonicalName(ns.Ns)] = true
			}
			rrs = append(rrs, rr)
		case f[3] == "A" || f[3] == "AAAA":
			rr, err := dns.NewRR(l)
			if err == nil {
				addrs = append(addrs, rr)
			}
		}
	}
	for _, a := range addrs {
		if nsNames[dns.CanonicalName(a.Header().Name)] {
			rrs = append(rrs, a)
		}
	}
	s, err := e.site(e.L.State.Active)
	if err != nil {
		return "", err
	}
	keys, err := zonesign.LoadKeys(s.KeyDir, origin)
	if err != nil {
		return "", fmt.Errorf("empty-zonelet: %w", err)
	}
	signed, err := zonesign.Sign(ctx, rrs, origin, keys, zonesign.Options{NSEC3: nsec3})
	if err != nil {
		return "", fmt.Errorf("empty-zonelet: sign: %w", err)
	}
	if err := zonesign.WriteFileAtomic(path, signed); err != nil {
		return "", fmt.Errorf("empty-zonelet: %w", err)
	}
	return fmt.Sprintf("serial %d: %d records, apex only, signed with %d key(s)", serial, len(signed), len(keys)), nil
}

// loseZoneStore is RIPE 2012 at one site: the agent dies, its zone store
// and zone files are gone, and it starts again with nothing.
func (e *LabEnv) loseZoneStore(ctx context.Context, site string) (string, error) {
	s, err := e.site(site)
	if err != nil {
		return "", err
	}
	if s.ZoneDir == "" {
		return "", fmt.Errorf("site %s has no zone_dir", site)
	}
	if _, err := e.killProc(ctx, "agent-"+site); err != nil {
		return "", err
	}
	if err := os.RemoveAll(filepath.Join(s.ZoneDir, "store")); err != nil {
		return "", fmt.Errorf("remove %s zone store: %w", site, err)
	}
	files, _ := filepath.Glob(filepath.Join(s.ZoneDir, "*.zone"))
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			return "", err
		}
	}
	if _, err := e.startAgent(ctx, site); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s agent restarted with no zone store and %d zone file(s) removed", site, len(files)), nil
}

// removeKey deletes one key pair (the first ZSK or KSK by tag) from a
// site's key_dir.
func (e *LabEnv) removeKey(site, which string) (string, error) {
	s, err := e.site(site)
	if err != nil {
		return "", err
	}
	if which == "" {
		which = "zsk"
	}
	files, _ := filepath.Glob(filepath.Join(s.KeyDir, "K*.key"))
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, ";") {
				continue
			}
			rr, err := dns.NewRR(l)
			k, ok := rr.(*dns.DNSKEY)
			if err != nil || !ok {
				continue
			}
			if (k.Flags&dns.SEP != 0) != (which == "ksk") {
				continue
			}
			priv := strings.TrimSuffix(f, ".key") + ".private"
			if err := os.Remove(priv); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
			if err := os.Remove(f); err != nil {
				return "", err
			}
			return fmt.Sprintf("removed %s %s tag %d from %s", site, strings.ToUpper(which), k.KeyTag(), s.KeyDir), nil
		}
	}
	return "", fmt.Errorf("no %s in %s", which, s.KeyDir)
}

// siteTarget is a site's loopback address and the ports this lab listens
// on there: a cut drops exactly these, so other labs on the same machine
// (which share the site addresses) are untouched.
func (e *LabEnv) siteTarget(site string) (string, []string, error) {
	s, err := e.site(site)
	if err != nil {
		return "", nil, err
	}
	host, _, err := net.SplitHostPort(s.AgentAddr)
	if err != nil {
		return "", nil, err
	}
	var ports []string
	for _, a := range e.L.State.Listen {
		h, p, err := net.SplitHostPort(a)
		if err == nil && h == host {
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		return "", nil, fmt.Errorf("no lab ports at %s", host)
	}
	return host, ports, nil
}

func (e *LabEnv) nftTable(site string) string {
	h := fnv.New32a()
	h.Write([]byte(e.L.State.Dir))
	return fmt.Sprintf("regdr_drill_%08x_%s", h.Sum32(), site)
}

func run(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cutSite drops every packet to and from the site's lab ports on lo with
// an nftables table of its own (Debian package nftables).
func (e *LabEnv) cutSite(ctx context.Context, site string) (string, error) {
	host, ports, err := e.siteTarget(site)
	if err != nil {
		return "", err
	}
	t := e.nftTable(site)
	set := strings.Join(ports, ", ")
	script := fmt.Sprintf(`table inet %[1]s {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr %[2]s meta l4proto { tcp, udp } th dport { %[3]s } drop
		ip saddr %[2]s meta l4proto { tcp, udp } th sport { %[3]s } drop
	}
}
`, t, host, set)
	if err := run(ctx, script, "nft", "-f", "-"); err != nil {
		return "", fmt.Errorf("cut-site %s: %w", site, err)
	}
	return fmt.Sprintf("%s cut off: %s ports %s dropped (nft table %s)", site, host, set, t), nil
}

func (e *LabEnv) restoreSite(ctx context.Context, site string) (string, error) {
	t := e.nftTable(site)
	if err := run(ctx, "", "nft", "list", "table", "inet", t); err != nil {
		return site + " was not cut off", nil
	}
	if err := run(ctx, "", "nft", "delete", "table", "inet", t); err != nil {
		return "", fmt.Errorf("restore-site %s: %w", site, err)
	}
	return site + " reachable again", nil
}

// addLatency delays packets to the site's address with tc netem on lo. It
// needs the kernel's sch_prio and sch_netem; where they are missing the
// error says so.
func (e *LabEnv) addLatency(ctx context.Context, site, delay string) (string, error) {
	host, _, err := e.siteTarget(site)
	if err != nil {
		return "", err
	}
	if _, err := time.ParseDuration(delay); err != nil {
		return "", fmt.Errorf("add-latency: delay %q: %w", delay, err)
	}
	ms := strings.TrimSuffix(delay, "s")
	if d, _ := time.ParseDuration(delay); d > 0 {
		ms = strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	for _, args := range [][]string{
		{"qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio", "bands", "4"},
		{"qdisc", "add", "dev", "lo", "parent", "1:4", "handle", "40:", "netem", "delay", ms},
		{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dst", host + "/32", "flowid", "1:4"},
	} {
		if err := run(ctx, "", "tc", args...); err != nil {
			_ = run(ctx, "", "tc", "qdisc", "del", "dev", "lo", "root")
			return "", fmt.Errorf("add-latency %s (needs the sch_prio and sch_netem kernel modules): %w", site, err)
		}
	}
	return fmt.Sprintf("%s delayed by %s", host, ms), nil
}

func (e *LabEnv) clearLatency(ctx context.Context, site string) (string, error) {
	if err := run(ctx, "", "tc", "qdisc", "del", "dev", "lo", "root"); err != nil {
		return site + ": no latency to clear", nil
	}
	return site + ": latency removed", nil
}

// deleteNewestBackup loses the newest backup's files while the catalog
// in etcd still lists it, as storage that lost data would: the restore
// test, not the catalog, has to notice.
func (e *LabEnv) deleteNewestBackup(ctx context.Context) (string, error) {
	b, err := backup.NewCatalog(e.etcd, e.L.Cfg.Etcd.Prefix).Latest(ctx)
	if err != nil {
		return "", fmt.Errorf("delete-newest-backup: %w", err)
	}
	dir := b.Path
	if b.Type == backup.TypePgBackRest {
		set := e.L.Cfg.BackupSettings()
		if set.PgBackRest == nil || set.PgBackRest.RepoPath == "" || b.Label == "" {
			return "", fmt.Errorf("delete-newest-backup: pgBackRest backup %s without a repository path or label", b.ID)
		}
		dir = filepath.Join(set.PgBackRest.RepoPath, "backup", b.Stanza, b.Label)
	}
	if dir == "" {
		return "", fmt.Errorf("delete-newest-backup: backup %s has no files recorded", b.ID)
	}
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("delete-newest-backup: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("delete-newest-backup: %w", err)
	}
	return fmt.Sprintf("backup %s (%s, %s) deleted from %s; the catalog still lists it", b.ID, b.Type, b.Time.Format(time.RFC3339), dir), nil
}
