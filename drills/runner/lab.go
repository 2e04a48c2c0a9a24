package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/drills/load"
	"github.com/regdr/regdr/drills/probe"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/overview"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/zonepull"
)

// LabEnv runs drills against a lab (internal/lab): it implements Faults,
// Observer, Commander and Loader. Close it when done.
type LabEnv struct {
	L *lab.Lab
	// WorkDir holds the load journal and scratch files.
	WorkDir string
	Log     *slog.Logger

	etcd *clientv3.Client
	keys store.Keys

	mu   sync.Mutex
	load *loadRun
}

type loadRun struct {
	cancel  context.CancelFunc
	done    chan struct{}
	stats   load.Stats
	err     error
	journal string
}

// NewLabEnv connects to the lab's etcd. workDir is created if missing.
func NewLabEnv(l *lab.Lab, workDir string, log *slog.Logger) (*LabEnv, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("drill work directory %s: %w", workDir, err)
	}
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		return nil, fmt.Errorf("drill: connect to the lab's etcd: %w", err)
	}
	return &LabEnv{L: l, WorkDir: workDir, Log: log, etcd: cli, keys: store.Keys{Prefix: l.Cfg.Etcd.Prefix}}, nil
}

// Etcd is the lab's etcd client (for the drill history).
func (e *LabEnv) Etcd() *clientv3.Client { return e.etcd }

// Close stops a load still running, lifts any network cut this lab's
// drills left behind (a drill interrupted between cut-site and its
// rollback) and closes the etcd client.
func (e *LabEnv) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = e.stopLoad(ctx)
	for _, s := range e.L.Cfg.Sites {
		if _, err := e.restoreSite(ctx, s.Name); err != nil {
			e.Log.Warn("drill cleanup: network cut left in place", "site", s.Name, "err", err)
		}
	}
	return e.etcd.Close()
}

// Vars are the variables regdr steps may use.
func (e *LabEnv) Vars() map[string]string {
	return map[string]string{"zone": e.L.State.TLD, "config": e.L.State.Config, "lab_dir": e.L.State.Dir}
}

// Regdr runs the lab's regdr binary with --config added.
func (e *LabEnv) Regdr(ctx context.Context, args []string) (string, string, int, error) {
	bin := e.L.State.Bin
	if bin == "" {
		return "", "", 0, errors.New("the lab records no regdr binary")
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", e.L.State.Config}, args...)...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return so.String(), se.String(), 0, nil
	case errors.As(err, &ee) && ctx.Err() == nil:
		return so.String(), se.String(), ee.ExitCode(), nil
	}
	return so.String(), se.String(), -1, err
}

// Probe returns the named probe aimed at the lab.
func (e *LabEnv) Probe(name string) (probe.Func, error) {
	st := e.L.State
	switch name {
	case "dns-serial":
		return probe.DNSSerial(st.Secondary, st.TLD), nil
	case "dnssec":
		if st.Resolver == "" {
			return nil, errors.New("this lab has no validating resolver")
		}
		return probe.DNSSEC(st.Resolver, st.TLD), nil
	case "registry-write":
		return probe.RegistryWrite(e.L.PrimaryConnString()), nil
	case "agent-health":
		return probe.AgentHealth(e.agentAddrs()), nil
	}
	return nil, fmt.Errorf("unknown probe %q", name)
}

func (e *LabEnv) agentAddrs() map[string]string {
	m := map[string]string{}
	for _, s := range e.L.Cfg.Sites {
		m[s.Name] = s.AgentAddr
	}
	return m
}

// Observe looks at every part of the lab at once; each part has its own
// short deadline so a dead site costs a timeout, not the observation.
func (e *LabEnv) Observe(ctx context.Context) Observation {
	st := e.L.State
	o := Observation{At: time.Now(), Zone: st.TLD, Agents: map[string]*status.Agent{}, AgentErr: map[string]string{},
		PostgresUp: map[string]bool{}, PGErr: map[string]string{}}
	for _, s := range e.L.Cfg.Sites {
		o.Sites = append(o.Sites, s.Name)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	do := func(f func(ctx context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			f(c)
		}()
	}
	do(func(c context.Context) {
		s, err := zonepull.QuerySerial(c, st.Secondary, st.TLD)
		mu.Lock()
		defer mu.Unlock()
		o.SecondarySerial = s
		if err != nil {
			o.SecondaryErr = err.Error()
		}
	})
	if st.Resolver != "" {
		do(func(c context.Context) {
			_, _, err := probe.DNSSEC(st.Resolver, st.TLD)(c)
			mu.Lock()
			defer mu.Unlock()
			o.Secure = err == nil
			if err != nil {
				o.SecureErr = err.Error()
			}
		})
	} else {
		o.SecureErr = "no validating resolver in this lab"
	}
	do(func(c context.Context) {
		_, _, err := probe.RegistryWrite(e.L.PrimaryConnString())(c)
		mu.Lock()
		defer mu.Unlock()
		o.Writable = err == nil
		if err != nil {
			o.WriteErr = err.Error()
		}
	})
	do(func(c context.Context) {
		a, found, err := store.GetActive(c, e.etcd, e.keys)
		fr, ferr := store.ListFreezes(c, e.etcd, e.keys)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			o.ActiveErr = err.Error()
		case !found:
			o.ActiveErr = "no active-site record"
		default:
			o.ActiveSite = a.Site
		}
		o.Freezes = fr
		if ferr != nil {
			o.FreezeErr = ferr.Error()
		}
	})
	for _, s := range e.L.Cfg.Sites {
		do(func(c context.Context) {
			a, err := overview.FetchAgent(c, s.AgentAddr, 1500*time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				o.AgentErr[s.Name] = err.Error()
				return
			}
			o.Agents[s.Name] = a
		})
	}
	for _, p := range st.Postgres {
		do(func(c context.Context) {
			err := pingPG(c, e.L.SiteConnString(p.Site))
			mu.Lock()
			defer mu.Unlock()
			o.PostgresUp[p.Site] = err == nil
			if err != nil {
				o.PGErr[p.Site] = err.Error()
			}
		})
	}
	do(func(c context.Context) {
		ok, detail := e.replication(c)
		mu.Lock()
		defer mu.Unlock()
		o.CaughtUp, o.ReplDetail = ok, detail
	})
	wg.Wait()
	return o
}

func pingPG(ctx context.Context, conn string) error {
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return c.Ping(ctx)
}

// caughtUpBytes is how far behind the primary's WAL position a standby may
// replay and still count as caught up: the agents' heartbeat writes a row
// every second, so an exact match would flicker.
const caughtUpBytes = 64 << 10

// replication asks the primary (the one that takes writes) how far each
// standby has replayed; it is caught up when every data site other than
// the primary streams within caughtUpBytes.
func (e *LabEnv) replication(ctx context.Context) (bool, string) {
	c, err := pgx.Connect(ctx, e.L.PrimaryConnString())
	if err != nil {
		return false, "primary unreachable: " + err.Error()
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, `SELECT application_name, state, COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), -1)::bigint
		FROM pg_stat_replication`)
	if err != nil {
		return false, "pg_stat_replication: " + err.Error()
	}
	defer rows.Close()
	var parts []string
	streaming := 0
	ok := true
	for rows.Next() {
		var name, state string
		var lag int64
		if err := rows.Scan(&name, &state, &lag); err != nil {
			return false, err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s %s lag %d bytes", name, state, lag))
		if state == "streaming" && lag >= 0 && lag <= caughtUpBytes {
			streaming++
		} else {
			ok = false
		}
	}
	if err := rows.Err(); err != nil {
		return false, err.Error()
	}
	want := len(e.L.State.Postgres) - 1
	if streaming < want {
		ok = false
		parts = append(parts, fmt.Sprintf("%d of %d standbys streaming and caught up", streaming, want))
	}
	return ok, strings.Join(parts, "; ")
}

// cluster is a site's PostgreSQL as pglab drives it.
func (e *LabEnv) cluster(site string) (*pglab.Cluster, error) {
	for _, p := range e.L.State.Postgres {
		if p.Site == site {
			return &pglab.Cluster{Name: p.Site, BinDir: p.BinDir, Dir: p.Dir, DataDir: p.DataDir,
				Host: p.Host, Port: p.Port, LogFile: p.LogFile}, nil
		}
	}
	return nil, fmt.Errorf("the lab has no PostgreSQL at site %q", site)
}

func (e *LabEnv) site(name string) (*config.Site, error) {
	s, ok := e.L.Cfg.Site(name)
	if !ok {
		return nil, fmt.Errorf("the lab has no site %q", name)
	}
	return s, nil
}

// refreshState takes the active site and the process records from
// lab.json: a failover's after_promote hook (`regdr lab follow`, another
// process) moves the generator and rewrites them there. Only Do and the
// lab's own teardown read these two fields, so updating them here races
// with no observer.
func (e *LabEnv) refreshState() {
	fresh, err := lab.LoadState(e.L.State.Dir)
	if err != nil {
		e.Log.Warn("drill: re-read lab state", "err", err)
		return
	}
	e.L.State.Active = fresh.Active
	e.L.State.Procs = fresh.Procs
}

// alive reports whether a recorded lab process still runs (not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// Do applies one action.
func (e *LabEnv) Do(ctx context.Context, action string, args map[string]string) (string, error) {
	e.refreshState()
	site := args["site"]
	switch action {
	case "stop-postgres", "kill-postgres", "start-postgres":
		c, err := e.cluster(site)
		if err != nil {
			return "", err
		}
		switch action {
		case "stop-postgres":
			if err := c.Stop(ctx, "fast"); err != nil {
				return "", err
			}
			return site + " PostgreSQL stopped (fast)", nil
		case "kill-postgres":
			if !c.Running() {
				return site + " PostgreSQL was not running", nil
			}
			if err := c.Kill(); err != nil {
				return "", err
			}
			if err := waitCond(ctx, func() bool { return !c.Running() }); err != nil {
				return "", fmt.Errorf("%s postmaster still running after SIGKILL: %w", site, err)
			}
			return site + " postmaster killed (SIGKILL)", nil
		}
		if c.Running() {
			return site + " PostgreSQL already running", nil
		}
		if err := c.Start(ctx); err != nil {
			return "", err
		}
		return site + " PostgreSQL started", nil
	case "kill-agent":
		return e.killProc(ctx, "agent-"+site)
	case "start-agent":
		return e.startAgent(ctx, site)
	case "restart-agent":
		if _, err := e.killProc(ctx, "agent-"+site); err != nil {
			return "", err
		}
		return e.startAgent(ctx, site)
	case "stop-generator":
		return e.killProc(ctx, "zonegen")
	case "start-generator":
		p, ok := e.L.State.Proc("zonegen")
		if ok && alive(p.Pid) {
			return "generator already running", nil
		}
		if err := e.L.Restart(ctx, "zonegen"); err != nil {
			return "", err
		}
		return "generator started", nil
	case "cut-site":
		return e.cutSite(ctx, site)
	case "restore-site":
		return e.restoreSite(ctx, site)
	case "add-latency":
		return e.addLatency(ctx, site, args["delay"])
	case "clear-latency":
		return e.clearLatency(ctx, site)
	case "trailing-dot":
		n := 20
		if v := args["names"]; v != "" {
			n, _ = strconv.Atoi(v)
		}
		return e.trailingDot(ctx, n)
	case "partial-zone":
		f := 0.5
		if v := args["fraction"]; v != "" {
			f, _ = strconv.ParseFloat(v, 64)
		}
		return e.partialZone(ctx, f)
	case "empty-zonelet":
		return e.emptyZonelet(ctx)
	case "lose-zone-store":
		return e.loseZoneStore(ctx, site)
	case "remove-key":
		return e.removeKey(site, args["which"])
	case "delete-newest-backup":
		return e.deleteNewestBackup(ctx)
	case "start-load":
		rate := 20.0
		if v := args["rate"]; v != "" {
			rate, _ = strconv.ParseFloat(v, 64)
		}
		return e.startLoad(rate)
	case "stop-load":
		if err := e.stopLoad(ctx); err != nil {
			return "", err
		}
		return "load stopped", nil
	}
	return "", fmt.Errorf("action %q is not implemented for the lab", action)
}

func (e *LabEnv) killProc(ctx context.Context, name string) (string, error) {
	p, ok := e.L.State.Proc(name)
	if !ok {
		return "", fmt.Errorf("the lab has no process %s", name)
	}
	if !alive(p.Pid) {
		if err := e.agentGone(ctx, name); err != nil {
			return "", err
		}
		return name + " was not running", nil
	}
	if err := lab.Kill(p); err != nil {
		return "", err
	}
	if err := waitCond(ctx, func() bool { return !alive(p.Pid) }); err != nil {
		return "", fmt.Errorf("%s (pid %d) survived SIGKILL: %w", name, p.Pid, err)
	}
	if err := e.agentGone(ctx, name); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s killed (pid %d)", name, p.Pid), nil
}

// agentGone checks that a killed agent's address stopped answering: if it
// still answers, the pid the lab recorded was not the agent's and the
// drill would go on against a site it believes dead.
func (e *LabEnv) agentGone(ctx context.Context, name string) error {
	site, ok := strings.CutPrefix(name, "agent-")
	if !ok {
		return nil
	}
	s, err := e.site(site)
	if err != nil {
		return err
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := waitCond(c, func() bool { return !lab.Listening(s.AgentAddr) }); err != nil {
		return fmt.Errorf("%s killed, but %s still answers: the lab's record of its pid is stale", name, s.AgentAddr)
	}
	return nil
}

func (e *LabEnv) startAgent(ctx context.Context, site string) (string, error) {
	s, err := e.site(site)
	if err != nil {
		return "", err
	}
	if p, ok := e.L.State.Proc("agent-" + site); ok && alive(p.Pid) {
		return "agent " + site + " already running", nil
	}
	// Something listening on the agent's address is not proof that the
	// new agent runs: the port may still be held (or taken meanwhile), in
	// which case the new process exits at once. So the agent must answer
	// with a start time after the spawn while its process lives; a start
	// that failed is tried again, a few times.
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		spawned := time.Now()
		if err := e.L.StartAgent(ctx, site); err != nil {
			last = err
		} else {
			last = e.waitAgentStarted(ctx, site, s.AgentAddr, spawned)
			if last == nil {
				return "agent " + site + " answering on " + s.AgentAddr, nil
			}
		}
		e.Log.Warn("agent start failed; retrying", "site", site, "attempt", attempt, "err", last)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("start agent %s: %w (last: %v)", site, ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
	return "", fmt.Errorf("start agent %s: %w", site, last)
}

// waitAgentStarted waits until the agent at addr reports a start after
// since, failing early when the recorded process has exited.
func (e *LabEnv) waitAgentStarted(ctx context.Context, site, addr string, since time.Time) error {
	p, _ := e.L.State.Proc("agent-" + site)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if !alive(p.Pid) {
			return fmt.Errorf("agent %s (pid %d) exited right after starting: %s", site, p.Pid, logTail(p.Log, 2))
		}
		a, err := overview.FetchAgent(ctx, addr, time.Second)
		if err == nil && !a.Started.Before(since.Add(-time.Second)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %s did not answer as a new process: %w", site, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail is the last n lines of a log file, for errors.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// waitCond polls cond every 20 ms until it holds or ctx ends.
func waitCond(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (e *LabEnv) startLoad(rate float64) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.load != nil {
		return "", errors.New("load is already running")
	}
	journal := filepath.Join(e.WorkDir, "load-"+time.Now().UTC().Format("20060102T150405.000")+".jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	lr := &loadRun{cancel: cancel, done: make(chan struct{}), journal: journal}
	opts := load.Options{ConnString: e.L.PrimaryConnString(), TLD: e.L.State.TLD, Rate: rate, JournalPath: journal, Logger: e.Log}
	go func() {
		defer close(lr.done)
		lr.stats, lr.err = load.Run(ctx, opts)
	}()
	e.load = lr
	return fmt.Sprintf("load at %g writes/s, journal %s", rate, journal), nil
}

func (e *LabEnv) stopLoad(ctx context.Context) error {
	e.mu.Lock()
	lr := e.load
	e.mu.Unlock()
	if lr == nil {
		return nil
	}
	lr.cancel()
	select {
	case <-lr.done:
	case <-ctx.Done():
		return fmt.Errorf("stop the load: %w", ctx.Err())
	}
	if lr.err != nil && !errors.Is(lr.err, context.Canceled) {
		return fmt.Errorf("load: %w", lr.err)
	}
	return nil
}

// FinishLoad stops the load and compares its journal with the registry
// the clients now write to.
func (e *LabEnv) FinishLoad(ctx context.Context) (*LoadResult, error) {
	e.mu.Lock()
	lr := e.load
	e.mu.Unlock()
	if lr == nil {
		return nil, nil
	}
	if err := e.stopLoad(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.load = nil
	e.mu.Unlock()
	recs, err := load.ReadJournal(lr.journal)
	if err != nil {
		return nil, fmt.Errorf("read the load journal: %w", err)
	}
	conn, err := pgx.Connect(ctx, e.L.PrimaryConnString())
	if err != nil {
		return nil, fmt.Errorf("connect to the registry to check the load: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	v, err := load.Check(ctx, conn, lr.stats.Prefix, recs)
	if err != nil {
		return nil, err
	}
	return &LoadResult{Stats: lr.stats, Verdict: v, Records: recs}, nil
}
