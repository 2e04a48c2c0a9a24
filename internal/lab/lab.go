package lab

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/agent"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/knotlab"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/portcheck"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/internal/unboundlab"
	"github.com/regdr/regdr/internal/zonegen"
	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/replicator/zonepull"
)

// Options for Up.
type Options struct {
	// Dir holds everything the lab makes. It must be traversable by the
	// postgres user (the lab chmods it 0755).
	Dir string
	// Domains is how many synthetic domains the registry starts with.
	Domains int
	// EtcdMembers is 1 (default) or 3 (one each at tokyo, osaka, witness).
	EtcdMembers int
	// TLD is the zone the registry runs (default "test.", reserved by RFC
	// 6761 so the lab can never be confused with a real zone).
	TLD string
	// NSEC3 signs with NSEC3 instead of NSEC.
	NSEC3 bool
	// Synchronous has the active agent manage synchronous replication
	// (degrading to async after 3 s without a streaming standby).
	Synchronous bool
	// Bin is the regdr binary started for etcd members, agents and the
	// generator (default: this executable).
	Bin    string
	Logger *slog.Logger
	// Fresh replaces a stopped lab already in Dir.
	Fresh bool
	// Progress, when set, gets one line per step (`lab up` shows it).
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		return errors.New("lab directory is required")
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = abs
	if o.Domains < 0 {
		return fmt.Errorf("--domains %d: must be zero or more", o.Domains)
	}
	if o.EtcdMembers == 0 {
		o.EtcdMembers = 1
	}
	if o.EtcdMembers != 1 && o.EtcdMembers != 3 {
		return fmt.Errorf("--etcd-members %d: must be 1 or 3", o.EtcdMembers)
	}
	if o.TLD == "" {
		o.TLD = "test."
	}
	o.TLD = dns.Fqdn(o.TLD)
	if _, ok := dns.IsDomainName(o.TLD); !ok || o.TLD == "." {
		return fmt.Errorf("--tld %q is not a domain name", o.TLD)
	}
	if o.Bin == "" {
		if o.Bin, err = os.Executable(); err != nil {
			return err
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// Lab is a running lab.
type Lab struct {
	State *State
	Cfg   *config.Config
	log   *slog.Logger
}

// Sites are the lab's data sites in their initial roles.
var Sites = []string{"tokyo", "osaka"}

// Prerequisites checks the system binaries the lab needs and returns one
// error naming everything missing and the exact command to install it.
func Prerequisites() error {
	var missing []string
	if _, err := pglab.FindBinDir(); err != nil {
		missing = append(missing, "postgresql-15")
	}
	if _, err := knotlab.Find(); err != nil {
		missing = append(missing, "knot", "knot-dnsutils")
	}
	if _, err := unboundlab.Find(); err != nil {
		missing = append(missing, "unbound")
	}
	// The lab archives WAL and keeps a pgBackRest stanza for the backup
	// restore tests.
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		missing = append(missing, "pgbackrest")
	}
	if len(missing) == 0 {
		return nil
	}
	return &MissingError{Packages: missing}
}

// MissingError lists Debian packages the lab needs.
type MissingError struct{ Packages []string }

func (e *MissingError) Error() string {
	return fmt.Sprintf("the lab needs Debian packages that are not installed: %v; install them with:\n  apt-get update && apt-get install -y %s\n(or run `regdr lab up --install` as root)", e.Packages, strings.Join(e.Packages, " "))
}

// Install runs apt-get for the missing packages (root only).
func Install(ctx context.Context, w io.Writer) error {
	err := Prerequisites()
	var me *MissingError
	if !errors.As(err, &me) {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("--install needs root: %w", err)
	}
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y"}, me.Packages...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Stdout, cmd.Stderr = w, w
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %v: %w", args, err)
		}
	}
	return Prerequisites()
}

// Up builds and starts a lab. On any error everything already started is
// stopped again, so a failed `lab up` leaves nothing running.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	if s, err := LoadState(o.Dir); err == nil {
		if s.anyRunning() {
			return nil, fmt.Errorf("a lab is already running in %s: run `regdr lab down --dir %s` first", o.Dir, o.Dir)
		}
		if !o.Fresh {
			return nil, fmt.Errorf("%s holds a stopped lab (created %s): use --fresh to replace it, or another --dir", o.Dir, s.Created.Format(time.RFC3339))
		}
		if err := os.RemoveAll(o.Dir); err != nil {
			return nil, fmt.Errorf("remove the old lab: %w", err)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	// The postgres user must reach its data directories below Dir.
	if err := os.Chmod(o.Dir, 0o755); err != nil {
		return nil, err
	}
	st := &State{Dir: o.Dir, TLD: o.TLD, Created: time.Now().UTC(), Domains: o.Domains, Active: "tokyo", Bin: o.Bin}
	l = &Lab{State: st, log: o.Logger}
	defer func() {
		if err != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if derr := l.Down(dctx); derr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, derr)
			}
		}
	}()
	step := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "lab: "+format+"\n", args...)
	}

	cfg, err := l.plan(o)
	if err != nil {
		return l, err
	}
	l.Cfg = cfg
	if err := st.Save(); err != nil {
		return l, err
	}

	step("starting etcd (%d member(s))", o.EtcdMembers)
	if err := l.startEtcd(ctx, o); err != nil {
		return l, err
	}

	step("creating PostgreSQL clusters: tokyo primary, osaka hot standby")
	if err := l.startPostgres(ctx, o, step); err != nil {
		return l, err
	}

	step("generating DNSSEC keys (KSK + ZSK, ECDSAP256SHA256) and the signed %s zone", o.TLD)
	tokyo, _ := cfg.Site("tokyo")
	for _, ksk := range []bool{true, false} {
		if _, err := zonesign.GenerateKey(tokyo.KeyDir, o.TLD, dns.ECDSAP256SHA256, ksk); err != nil {
			return l, fmt.Errorf("generate lab keys: %w", err)
		}
	}
	serial, err := zonegen.GenerateOnce(ctx, l.GeneratorOptions(o.NSEC3))
	if err != nil {
		return l, fmt.Errorf("generate the first zone: %w", err)
	}

	step("initialising the active-site record (tokyo, epoch 1)")
	if err := l.initEtcdRecords(ctx); err != nil {
		return l, err
	}

	step("starting agents: tokyo, osaka, witness")
	for _, s := range cfg.Sites {
		if err := l.startAgent(s.Name); err != nil {
			return l, err
		}
	}
	// Knot's first refresh must find the zone served, or it backs off
	// for tens of seconds before trying again.
	// Loading and transferring scale with the zone: ~10 s more per
	// 100,000 domains on this 2-core class of machine.
	zoneWait := 30*time.Second + time.Duration(o.Domains/10000)*time.Second
	if err := waitUntil(ctx, zoneWait, "tokyo's agent to serve the first zone", func() error {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		got, err := zonepull.QuerySerial(c, tokyo.DNSAddr, o.TLD)
		if err == nil && got != serial {
			err = fmt.Errorf("serves serial %d", got)
		}
		return err
	}); err != nil {
		return l, err
	}
	step("starting Knot DNS as the public secondary on %s", st.Secondary)
	if err := l.startKnot(ctx); err != nil {
		return l, err
	}
	step("starting the zone generator (LISTEN registry_changed)")
	if err := l.startGenerator(o.NSEC3); err != nil {
		return l, err
	}
	step("waiting for the secondary to serve serial %d", serial)
	if err := l.WaitSecondarySerial(ctx, serial, 2*zoneWait); err != nil {
		return l, err
	}
	if err := l.startResolver(ctx, step); err != nil {
		return l, err
	}
	// The failover's outside verification asks the lab's validating
	// resolver; its address is known only now.
	if l.Cfg.Failover != nil && st.Resolver != "" {
		l.Cfg.Failover.Resolver = st.Resolver
		b, err := l.Cfg.Marshal()
		if err != nil {
			return l, err
		}
		if err := os.WriteFile(st.Config, b, 0o644); err != nil {
			return l, err
		}
	}
	if err := l.upKeys(ctx, step); err != nil {
		return l, err
	}
	if err := l.upBackup(ctx, step); err != nil {
		return l, err
	}
	// Steady state before "up": every standby streams and holds the
	// zone, so a plan made right away finds nothing missing.
	step("waiting for osaka to stream and hold the zone")
	if err := l.waitSteady(ctx); err != nil {
		return l, err
	}
	step("up: config %s", st.Config)
	return l, nil
}

// plan chooses addresses and ports and writes the deployment config and
// secrets; nothing is started.
func (l *Lab) plan(o Options) (*config.Config, error) {
	st := l.State
	port := func(site string) (string, error) {
		p, err := freePort(siteHosts[site])
		if err != nil {
			return "", err
		}
		addr := net.JoinHostPort(siteHosts[site], strconv.Itoa(p))
		st.Listen = append(st.Listen, addr)
		return addr, nil
	}
	secrets := filepath.Join(o.Dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	tsigFile := filepath.Join(secrets, "xfr.tsig")
	if err := os.WriteFile(tsigFile, []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return nil, err
	}
	cfg := &config.Config{
		Deployment: "lab",
		Etcd:       config.Etcd{Prefix: "/regdr", DialTimeout: config.Duration{Duration: 2 * time.Second}},
		Zones:      []config.Zone{{Origin: o.TLD, Source: "file", TSIGKey: "xfr"}},
		TSIGKeys:   []config.TSIGKey{{Name: "xfr", Algorithm: "hmac-sha256", SecretFile: tsigFile}},
		Agent:      config.Agent{Gossip: "local", HeartbeatInterval: config.Duration{Duration: time.Second}, LeaseTTL: config.Duration{Duration: 5 * time.Second}},
	}
	cfg.Gates = config.Default().Gates
	members := []string{"tokyo"}
	if o.EtcdMembers == 3 {
		members = []string{"tokyo", "osaka", "witness"}
	}
	for _, m := range members {
		c, err := port(m)
		if err != nil {
			return nil, err
		}
		p, err := port(m)
		if err != nil {
			return nil, err
		}
		st.Etcd = append(st.Etcd, Member{Name: m, ClientURL: "http://" + c, PeerURL: "http://" + p, DataDir: filepath.Join(o.Dir, "etcd", m)})
		cfg.Etcd.Endpoints = append(cfg.Etcd.Endpoints, "http://"+c)
	}
	for _, name := range []string{"tokyo", "osaka", "witness"} {
		s := config.Site{Name: name, Witness: name == "witness"}
		var err error
		if s.AgentAddr, err = port(name); err != nil {
			return nil, err
		}
		if s.GossipAddr, err = port(name); err != nil {
			return nil, err
		}
		if !s.Witness {
			pgPort, err := freePort(siteHosts[name])
			if err != nil {
				return nil, err
			}
			st.Listen = append(st.Listen, net.JoinHostPort(siteHosts[name], strconv.Itoa(pgPort)))
			st.Postgres = append(st.Postgres, PG{Site: name, Host: siteHosts[name], Port: pgPort,
				Dir: filepath.Join(o.Dir, name, "pg")})
			s.Postgres = fmt.Sprintf("host=%s port=%d user=regdr dbname=registry sslmode=disable connect_timeout=2", siteHosts[name], pgPort)
			if s.DNSAddr, err = port(name); err != nil {
				return nil, err
			}
			binDir, err := pglab.FindBinDir()
			if err != nil {
				return nil, err
			}
			// How the agent rewinds and restarts its own server as a
			// standby when the other site took over.
			s.PGControl = &config.PGControl{
				DataDir: filepath.Join(o.Dir, name, "pg", "data"), BinDir: binDir,
				LogFile:             filepath.Join(o.Dir, name, "pg", "postgres.log"),
				ReplicationConnInfo: fmt.Sprintf("host=%s port=%d user=regdr", siteHosts[name], pgPort),
				Slot:                pglab.SlotName(name), SalvageDir: filepath.Join(o.Dir, name, "salvage"),
			}
			s.KeyDir = filepath.Join(o.Dir, name, "keys")
			s.ZoneDir = filepath.Join(o.Dir, name, "zones")
			for _, d := range []string{s.KeyDir, s.ZoneDir} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					return nil, err
				}
			}
		}
		cfg.Sites = append(cfg.Sites, s)
	}
	sec, err := port("secondary")
	if err != nil {
		return nil, err
	}
	st.Secondary = sec
	cfg.Secondary = []config.Secondary{{Name: "knot", Addr: sec, Notify: true}}

	// After a promotion the lab's registry generator moves to the new
	// active site, as an operator's hook would move EPP endpoints.
	cfg.Failover = &config.Failover{Hooks: config.Hooks{
		AfterPromote: [][]string{{l.bin(), "lab", "follow", "--dir", o.Dir}},
	}}
	if o.Synchronous {
		cfg.Failover.Synchronous = true
		cfg.Failover.SyncDegradeAfter = config.Duration{Duration: 3 * time.Second}
	}
	if err := planOperators(cfg, o.Dir); err != nil {
		return nil, err
	}
	if err := l.planKeys(cfg, o); err != nil {
		return nil, err
	}
	if err := l.planBackup(cfg, o); err != nil {
		return nil, err
	}
	b, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	st.Config = filepath.Join(o.Dir, "regdr.yaml")
	if err := os.WriteFile(st.Config, b, 0o644); err != nil {
		return nil, err
	}
	// Load it back: the lab runs on exactly what `regdr config check`
	// would accept.
	return config.Load(st.Config)
}

func (l *Lab) startEtcd(ctx context.Context, o Options) error {
	st := l.State
	for _, m := range st.Etcd {
		p, err := spawn("etcd-"+m.Name, filepath.Join(st.Dir, "etcd-"+m.Name+".log"),
			[]string{l.bin(), "lab", "etcd", "--dir", st.Dir, "--member", m.Name}, nil)
		if err != nil {
			return err
		}
		st.setProc(p)
		if err := st.Save(); err != nil {
			return err
		}
	}
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	return waitUntil(ctx, 30*time.Second, "etcd to answer", func() error {
		for _, m := range st.Etcd {
			if p, _ := st.Proc("etcd-" + m.Name); !alive(p.Pid) {
				return fmt.Errorf("etcd member %s exited (see %s)", m.Name, p.Log)
			}
		}
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := cli.Get(c, "health")
		return err
	})
}

func (l *Lab) initEtcdRecords(ctx context.Context) error {
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	keys := store.Keys{Prefix: l.Cfg.Etcd.Prefix}
	rec, err := store.InitActive(c, cli, keys, "tokyo", "lab up")
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("initialise the active-site record: %w", err)
	}
	_, err = audit.New(cli, keys).Append(c, audit.Entry{
		Who: "lab", Action: "active.init", Target: "tokyo", Result: "ok",
		Detail: map[string]string{"epoch": strconv.FormatUint(rec.Epoch, 10), "dir": l.State.Dir},
	})
	if err != nil {
		return fmt.Errorf("audit the lab setup: %w", err)
	}
	return nil
}

func (l *Lab) startPostgres(ctx context.Context, o Options, step func(string, ...any)) error {
	st := l.State
	bin, err := pglab.FindBinDir()
	if err != nil {
		return err
	}
	tk, os_ := st.Postgres[0], st.Postgres[1]
	primary, err := pglab.InitPrimary(ctx, pglab.Options{Name: "tokyo", Dir: tk.Dir, Host: tk.Host, Port: tk.Port, Standbys: []string{"osaka"}})
	if err != nil {
		return fmt.Errorf("tokyo PostgreSQL: %w", err)
	}
	st.Postgres[0].DataDir, st.Postgres[0].LogFile, st.Postgres[0].BinDir = primary.DataDir, primary.LogFile, bin
	if err := st.Save(); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, primary.ConnString("registry"))
	if err != nil {
		return fmt.Errorf("connect to tokyo PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if err := registry.Apply(ctx, conn); err != nil {
		return fmt.Errorf("registry schema: %w", err)
	}
	step("populating the registry with %d domains", o.Domains)
	if err := registry.Populate(ctx, conn, o.TLD, o.Domains); err != nil {
		return fmt.Errorf("populate registry: %w", err)
	}
	standby, err := pglab.CreateStandby(ctx, primary, pglab.Options{Name: "osaka", Dir: os_.Dir, Host: os_.Host, Port: os_.Port})
	if err != nil {
		return fmt.Errorf("osaka standby: %w", err)
	}
	st.Postgres[1].DataDir, st.Postgres[1].LogFile, st.Postgres[1].BinDir = standby.DataDir, standby.LogFile, bin
	return st.Save()
}

func (l *Lab) startAgent(site string, extra ...string) error {
	st := l.State
	bin := l.bin()
	p, err := spawn("agent-"+site, filepath.Join(st.Dir, "agent-"+site+".log"),
		append([]string{bin, "agent", "--config", st.Config, "--site", site}, extra...), nil)
	if err != nil {
		return err
	}
	st.setProc(p)
	return st.Save()
}

// StartAgent (re)starts a site's agent, e.g. after a test killed it, with
// extra agent flags (e.g. --etcd-endpoints through a proxy a test cuts).
func (l *Lab) StartAgent(ctx context.Context, site string, extra ...string) error {
	s, _ := l.Cfg.Site(site)
	// A killed agent's group leader shows as a zombie while its other
	// threads are still closing its sockets: wait until its ports are
	// free, or the new agent fails to bind them.
	if err := waitUntil(ctx, 10*time.Second, "agent "+site+"'s ports to be free", func() error {
		for _, a := range []string{s.AgentAddr, s.GossipAddr, s.DNSAddr} {
			if a == "" {
				continue
			}
			if err := portcheck.Free(a); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := l.startAgent(site, extra...); err != nil {
		return err
	}
	return waitUntil(ctx, 20*time.Second, "agent "+site+" to answer", func() error {
		if !Listening(s.AgentAddr) {
			return fmt.Errorf("%s not listening", s.AgentAddr)
		}
		return nil
	})
}

// Restart respawns a recorded lab process (etcd member, agent, generator)
// with the arguments it was first started with, after a test or a drill
// stopped it. It refuses to start a second copy of a running process.
func (l *Lab) Restart(ctx context.Context, name string) error {
	p, ok := l.State.Proc(name)
	if !ok || len(p.Args) == 0 {
		return fmt.Errorf("lab has no restartable process %q", name)
	}
	if alive(p.Pid) {
		return fmt.Errorf("%s is still running (pid %d)", name, p.Pid)
	}
	np, err := spawn(name, p.Log, p.Args, nil)
	if err != nil {
		return err
	}
	l.State.setProc(np)
	if err := l.State.Save(); err != nil {
		return err
	}
	// Give it a moment to fail fast (port taken, bad config) so the
	// caller hears about it here rather than from a later timeout.
	time.Sleep(100 * time.Millisecond)
	if !alive(np.Pid) {
		return fmt.Errorf("%s exited right after restart (see %s)", name, np.Log)
	}
	return nil
}

func (l *Lab) bin() string {
	if l.State.Bin != "" {
		return l.State.Bin
	}
	b, _ := os.Executable()
	return b
}

func (l *Lab) startKnot(ctx context.Context) error {
	st := l.State
	_, secret, err := l.Cfg.TSIG("xfr")
	if err != nil {
		return err
	}
	var primaries []netip.AddrPort
	for _, s := range l.Cfg.DataSites() {
		ap, err := netip.ParseAddrPort(s.DNSAddr)
		if err != nil {
			return err
		}
		primaries = append(primaries, ap)
	}
	listen, err := netip.ParseAddrPort(st.Secondary)
	if err != nil {
		return err
	}
	kc := knotlab.Config{
		Dir: filepath.Join(st.Dir, "knot"), Listen: listen,
		Zones:    []knotlab.ZoneConf{{Origin: st.TLD, Primaries: primaries}},
		TSIGName: "xfr.", TSIGAlgorithm: "hmac-sha256", TSIGSecret: secret,
	}
	k, err := knotlab.Start(ctx, kc)
	if err != nil {
		return fmt.Errorf("knot: %w", err)
	}
	st.setProc(Proc{Name: "knot", Pid: k.Pid(), Group: true, Log: filepath.Join(kc.Dir, "knot.log")})
	return st.Save()
}

func (l *Lab) GeneratorOptions(nsec3 bool) zonegen.Options {
	tokyo, _ := l.Cfg.Site(l.State.Active)
	return zonegen.Options{
		ConnString: l.PrimaryConnString(),
		Origin:     l.State.TLD,
		KeyDir:     tokyo.KeyDir,
		OutFile:    agent.ZoneFile(tokyo.ZoneDir, l.State.TLD),
		ApexNS:     []string{"ns1.nic." + l.State.TLD},
		ApexGlue:   map[string][]netip.Addr{"ns1.nic." + l.State.TLD: {netip.MustParseAddr(siteHosts["secondary"])}},
		NSEC3:      nsec3,
		Logger:     l.log,
	}
}

func (l *Lab) startGenerator(nsec3 bool) error {
	st := l.State
	args := []string{l.bin(), "lab", "zonegen", "--dir", st.Dir}
	if nsec3 {
		args = append(args, "--nsec3")
	}
	p, err := spawn("zonegen", filepath.Join(st.Dir, "zonegen.log"), args, nil)
	if err != nil {
		return err
	}
	st.setProc(p)
	return st.Save()
}

// PrimaryConnString reaches whichever site's database accepts writes: both
// sites are listed and libpq-style target_session_attrs picks the primary,
// so writers follow a failover without being told.
func (l *Lab) PrimaryConnString() string {
	hosts, ports := "", ""
	for i, p := range l.State.Postgres {
		if i > 0 {
			hosts += ","
			ports += ","
		}
		hosts += p.Host
		ports += strconv.Itoa(p.Port)
	}
	return fmt.Sprintf("host=%s port=%s user=regdr dbname=registry sslmode=disable connect_timeout=2 target_session_attrs=read-write", hosts, ports)
}

// SiteConnString reaches one site's database.
func (l *Lab) SiteConnString(site string) string {
	for _, p := range l.State.Postgres {
		if p.Site == site {
			return fmt.Sprintf("host=%s port=%d user=regdr dbname=registry sslmode=disable connect_timeout=2", p.Host, p.Port)
		}
	}
	return ""
}

// SecondarySerial asks the public secondary for the zone's serial.
func (l *Lab) SecondarySerial(ctx context.Context) (uint32, error) {
	return zonepull.QuerySerial(ctx, l.State.Secondary, l.State.TLD)
}

// WaitSecondarySerial waits until the secondary serves serial or newer.
func (l *Lab) WaitSecondarySerial(ctx context.Context, serial uint32, d time.Duration) error {
	return waitUntil(ctx, d, fmt.Sprintf("the secondary %s to serve %s serial %d", l.State.Secondary, l.State.TLD, serial), func() error {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		got, err := l.SecondarySerial(c)
		if err != nil {
			return err
		}
		if got < serial {
			return fmt.Errorf("serves %d", got)
		}
		return nil
	})
}

// Open loads a running lab from its directory.
func Open(dir string) (*Lab, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(st.Config)
	if err != nil {
		return nil, err
	}
	return &Lab{State: st, Cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil
}

// Follow moves the lab registry's zone generator to site after a failover:
// it writes into that site's zone_dir and signs with that site's keys, as a
// registry's own generator at the new site would. The lab config runs it as
// the after_promote hook.
func (l *Lab) Follow(ctx context.Context, site string) error {
	s, ok := l.Cfg.Site(site)
	if !ok || s.Witness {
		return fmt.Errorf("follow: %q is not a data site of the lab", site)
	}
	l.State.Active = site
	if err := l.State.Save(); err != nil {
		return err
	}
	if p, ok := l.State.Proc("zonegen"); ok {
		if err := Kill(p); err != nil {
			return fmt.Errorf("follow: stop the generator: %w", err)
		}
	}
	return l.Restart(ctx, "zonegen")
}

// RecoverEtcd restores a lab etcd that lost quorum: the surviving member
// restarts alone from its data with force-new-cluster, and the lost
// members leave the lab's records (a lost member that came back with its
// old data would believe in the old cluster). Writes the survivor had not
// received are lost, as with etcd's own recovery.
func (l *Lab) RecoverEtcd(ctx context.Context, member string) error {
	st := l.State
	var keep []Member
	for _, m := range st.Etcd {
		if m.Name == member {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return fmt.Errorf("lab has no etcd member %q", member)
	}
	for _, m := range st.Etcd {
		if p, ok := st.Proc("etcd-" + m.Name); ok && m.Name != member && alive(p.Pid) {
			return fmt.Errorf("etcd member %s is still running: recover only when the others are lost (kill it first)", m.Name)
		}
	}
	if p, ok := st.Proc("etcd-" + member); ok {
		if err := Kill(p); err != nil {
			return err
		}
	}
	p, err := spawn("etcd-"+member, filepath.Join(st.Dir, "etcd-"+member+".log"),
		[]string{l.bin(), "lab", "etcd", "--dir", st.Dir, "--member", member, "--force-new-cluster"}, nil)
	if err != nil {
		return err
	}
	st.setProc(p)
	st.Etcd = keep
	if err := st.Save(); err != nil {
		return err
	}
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	return waitUntil(ctx, 30*time.Second, "the recovered etcd member to answer", func() error {
		if !alive(p.Pid) {
			return fmt.Errorf("etcd member %s exited (see %s)", member, p.Log)
		}
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := cli.Put(c, "/regdr-lab/recovered", member)
		return err
	})
}

// waitSteady waits until every standby site streams from the primary and
// its agent serves a zone version.
func (l *Lab) waitSteady(ctx context.Context) error {
	active, _ := l.Cfg.Site(l.State.Active)
	// The standby transfers and checks the whole zone once: about two
	// minutes for a million delegations on two cores.
	limit := time.Minute + time.Duration(l.State.Domains/1000)*150*time.Millisecond
	for _, s := range l.Cfg.DataSites() {
		if s.Name == active.Name {
			continue
		}
		err := waitUntil(ctx, limit, s.Name+" to stream from "+active.Name, func() error {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			conn, err := pgx.Connect(c, active.Postgres)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			var n int
			if err := conn.QueryRow(c, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", s.Name).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("%s not streaming", s.Name)
			}
			for _, z := range l.Cfg.Zones {
				if _, err := zonepull.QuerySerial(c, s.DNSAddr, z.Origin); err != nil {
					return fmt.Errorf("%s serves no %s yet: %w", s.Name, z.Origin, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
