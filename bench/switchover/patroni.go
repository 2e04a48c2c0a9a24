package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDir is Debian's PostgreSQL 15, the version the regdr lab runs.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// patroniNode is one Patroni-managed PostgreSQL cluster.
type patroniNode struct {
	Name    string
	Dir     string
	PGPort  int
	APIPort int
	cmd     *exec.Cmd
	done    chan struct{}
}

func (n *patroniNode) config() string  { return filepath.Join(n.Dir, "patroni.yml") }
func (n *patroniNode) logFile() string { return filepath.Join(n.Dir, "patroni.log") }
func (n *patroniNode) pgLog() string   { return filepath.Join(n.Dir, "pglog", "postgresql.log") }
func (n *patroniNode) dataDir() string { return filepath.Join(n.Dir, "data") }
func (n *patroniNode) api() string     { return fmt.Sprintf("http://127.0.0.1:%d", n.APIPort) }
func (n *patroniNode) connString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=1", n.PGPort)
}

// patroniYAML is the node's config. Timers are Patroni's smallest sane
// ones (loop_wait 1 s instead of 10 s): the benchmark compares the best
// each tool can do on the same machine, not defaults. The DCS timers
// only matter to failure detection; a switchover is driven by the API
// call and woken at once (ha.wakeup), but each HA loop step waits for the
// next loop after a DCS change.
func (n *patroniNode) yaml(etcd string, loopWait, ttl, retry int) string {
	return fmt.Sprintf(`scope: regdr-bench
namespace: /patroni/
name: %[1]s
log:
  level: INFO
  format: '%%(asctime)s %%(levelname)s: %%(message)s'
restapi:
  listen: 127.0.0.1:%[2]d
  connect_address: 127.0.0.1:%[2]d
etcd3:
  hosts: [%[3]s]
bootstrap:
  dcs:
    ttl: %[7]d
    loop_wait: %[6]d
    retry_timeout: %[8]d
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: 'on'
  initdb:
  - encoding: UTF8
  - locale: C
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:%[4]d
  connect_address: 127.0.0.1:%[4]d
  data_dir: %[5]s/data
  bin_dir: %[9]s
  pgpass: %[5]s/pgpass
  authentication:
    superuser:
      username: postgres
      password: bench
    replication:
      username: replicator
      password: bench
  parameters:
    unix_socket_directories: '%[5]s'
    logging_collector: 'on'
    log_directory: '%[5]s/pglog'
    log_filename: 'postgresql.log'
    log_line_prefix: '%%m [%%p] '
    shared_buffers: 64MB
    fsync: 'on'
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
`, n.Name, n.APIPort, etcd, n.PGPort, n.Dir, loopWait, ttl, retry, pgBinDir)
}

type postgresUser struct{ uid, gid int }

func lookupPostgres() (postgresUser, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return postgresUser{}, fmt.Errorf("patroni runs PostgreSQL, which refuses root: user postgres: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return postgresUser{uid, gid}, nil
}

func (p postgresUser) cred() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if os.Geteuid() == 0 {
		a.Credential = &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}
	}
	return a
}

func (n *patroniNode) start(pg postgresUser) error {
	for _, d := range []string{n.Dir, filepath.Join(n.Dir, "pglog")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(d, pg.uid, pg.gid); err != nil {
				return err
			}
		}
	}
	lf, err := os.OpenFile(n.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	n.cmd = exec.Command("patroni", n.config())
	n.cmd.Dir = n.Dir
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	n.cmd.Env = append(os.Environ(), "HOME="+n.Dir)
	n.cmd.SysProcAttr = pg.cred()
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start patroni %s: %w", n.Name, err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.done) }()
	return nil
}

// stop asks Patroni to shut down (it stops PostgreSQL first), then makes
// sure: an immediate pg_ctl stop for a postmaster left behind, and SIGKILL
// for the process group.
func (n *patroniNode) stop(pg postgresUser) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
	}
	if _, err := os.Stat(filepath.Join(n.dataDir(), "postmaster.pid")); err == nil {
		c := exec.Command(filepath.Join(pgBinDir, "pg_ctl"), "stop", "-m", "immediate", "-w", "-t", "10", "-D", n.dataDir())
		c.SysProcAttr = pg.cred()
		c.SysProcAttr.Pdeathsig = 0
		c.Run()
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
	}
}

var httpc = &http.Client{Timeout: 60 * time.Second}

// is asks the node's REST API: GET /primary answers 200 only on the
// leader, GET /replica only on a healthy running replica.
func (n *patroniNode) is(ctx context.Context, what string) bool {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(c, http.MethodGet, n.api()+"/"+what, nil)
	resp, err := httpc.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// streamingTo reports whether the primary on n has a standby named
// standby streaming from it.
func (n *patroniNode) streamingTo(ctx context.Context, standby string) bool {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(c, n.connString())
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	var ok bool
	err = conn.QueryRow(c, `SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming')`, standby).Scan(&ok)
	return err == nil && ok
}

func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %s for %s: %w", d, what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// switchoverREST is what `patronictl switchover --force` does, without
// the Python start-up: POST /switchover to the leader, which returns once
// Patroni saw the candidate take the leader key (or gave up).
func switchoverREST(ctx context.Context, leader *patroniNode, candidate string) error {
	body, _ := json.Marshal(map[string]string{"leader": leader.Name, "candidate": candidate})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, leader.api()+"/switchover", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s/switchover: %w", leader.api(), err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s/switchover: %s: %s", leader.api(), resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func switchoverCtl(ctx context.Context, leader *patroniNode, candidate string) error {
	cmd := exec.CommandContext(ctx, "patronictl", "-c", leader.config(), "switchover", "--leader", leader.Name, "--candidate", candidate, "--force")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("patronictl switchover: %w: %s", err, strings.TrimSpace(string(out)))
	}
	// patronictl exits 0 even when the switchover failed; it prints why.
	if !strings.Contains(string(out), "Successfully switched over") {
		return fmt.Errorf("patronictl switchover: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// runPatroni sets up etcd and two Patroni nodes under o.Dir, runs the
// write load, and times o.N switchovers back and forth.
func runPatroni(ctx context.Context, o options, log *slog.Logger) (res []sample, err error) {
	pg, err := lookupPostgres()
	if err != nil {
		return nil, err
	}
	for _, tool := range []string{"patroni", "patronictl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install -y patroni", tool)
		}
	}
	etcd, etcdAddr, err := startEtcd(ctx, o.Dir)
	if err != nil {
		return nil, err
	}
	defer etcd.Close()
	log.Info("etcd up", "addr", etcdAddr)

	var nodes []*patroniNode
	defer func() {
		for _, n := range nodes {
			n.stop(pg)
		}
	}()
	for _, name := range []string{"node1", "node2"} {
		n := &patroniNode{Name: name, Dir: filepath.Join(o.Dir, name)}
		if n.PGPort, err = freePort(); err != nil {
			return nil, err
		}
		if n.APIPort, err = freePort(); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(n.Dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(n.config(), []byte(n.yaml(etcdAddr, o.LoopWait, o.TTL, o.Retry)), 0o644); err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	// The first node bootstraps the cluster (initdb) and becomes leader;
	// the second clones it with pg_basebackup.
	if err := nodes[0].start(pg); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, "node1 to bootstrap and lead", func() bool { return nodes[0].is(ctx, "primary") }); err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, nodes[0].logFile())
	}
	log.Info("node1 leads; starting node2")
	if err := nodes[1].start(pg); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 90*time.Second, "node2 to stream from node1", func() bool {
		return nodes[1].is(ctx, "replica") && nodes[0].streamingTo(ctx, "node2")
	}); err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, nodes[1].logFile())
	}

	conn, err := pgx.Connect(ctx, nodes[0].connString())
	if err != nil {
		return nil, err
	}
	_, err = conn.Exec(ctx, journalDDL)
	conn.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("create the load table: %w", err)
	}

	ld := &loader{
		connString: fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres sslmode=disable connect_timeout=1 target_session_attrs=read-write",
			nodes[0].PGPort, nodes[1].PGPort),
		interval: time.Second / time.Duration(o.Rate),
		log:      log,
	}
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { ld.run(lctx); close(loadDone) }()
	defer func() { stopLoad(); <-loadDone }()
	if _, err := ld.waitAckOn(ctx, nodes[0].PGPort, time.Now()); err != nil {
		return nil, err
	}
	log.Info("load running", "rate", o.Rate)
	time.Sleep(o.Settle)

	leader, other := nodes[0], nodes[1]
	for i := range o.N {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		s := sample{From: leader.Name, To: other.Name}
		start := time.Now()
		if o.Patronictl {
			err = switchoverCtl(ctx, leader, other.Name)
		} else {
			err = switchoverREST(ctx, leader, other.Name)
		}
		if err != nil {
			return res, fmt.Errorf("switchover %d (%s to %s): %w", i+1, leader.Name, other.Name, err)
		}
		s.Command = time.Since(start)
		first, err := ld.waitAckOn(ctx, other.PGPort, start)
		if err != nil {
			return res, fmt.Errorf("switchover %d: %w", i+1, err)
		}
		s.FirstWrite = first.At.Sub(start)
		if err := waitFor(ctx, 120*time.Second, leader.Name+" to stream from "+other.Name, func() bool {
			return other.streamingTo(ctx, leader.Name) && leader.is(ctx, "replica")
		}); err != nil {
			return res, fmt.Errorf("switchover %d: %w", i+1, err)
		}
		s.Healthy = time.Since(start)
		lastOld, firstNew, err := writeGap(ld.snapshot(), start, leader.PGPort, other.PGPort)
		if err != nil {
			return res, fmt.Errorf("switchover %d: %w", i+1, err)
		}
		s.WriteGap = firstNew.At.Sub(lastOld.At)
		s.Phases = patroniPhases(start, leader, other)
		if o.Verbose {
			printTimeline(os.Stderr, start, time.Now(), leader, other)
		}
		res = append(res, s)
		log.Info("switchover", "n", i+1, "from", s.From, "to", s.To, "command", s.Command, "gap", s.WriteGap, "healthy", s.Healthy)
		leader, other = other, leader
		time.Sleep(o.Settle)
	}
	stopLoad()
	<-loadDone
	acks := ld.snapshot()
	conn, err = pgx.Connect(ctx, leader.connString())
	if err != nil {
		return res, err
	}
	defer conn.Close(context.Background())
	lost, err := missing(ctx, conn, acks)
	if err != nil {
		return res, err
	}
	fmt.Printf("acknowledged writes: %d, on the final primary: %d, lost: %d, failed attempts: %d\n",
		len(acks), len(acks)-len(lost), len(lost), ld.errors)
	if len(lost) > 0 {
		return res, fmt.Errorf("%d acknowledged writes lost (first ids %v)", len(lost), lost[:min(10, len(lost))])
	}
	return res, nil
}

// logLine is one timestamped line from a Patroni or PostgreSQL log.
type logLine struct {
	At   time.Time
	Who  string
	Text string
}

// readLog returns the lines of path timestamped in [from, to]. Patroni
// writes "2006-01-02 15:04:05,000 LEVEL: msg" in local time; PostgreSQL
// (log_line_prefix '%m [%p] ') "2006-01-02 15:04:05.000 UTC [pid] msg".
func readLog(path, who string, from, to time.Time) []logLine {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		var at time.Time
		var text string
		if len(line) > 23 && line[19] == ',' {
			at, err = time.ParseInLocation("2006-01-02 15:04:05,000", line[:23], time.Local)
			text = line[24:]
		} else if len(line) > 24 && line[19] == '.' {
			sp := strings.IndexByte(line[24:], ' ')
			if sp < 0 {
				continue
			}
			at, err = time.Parse("2006-01-02 15:04:05.000 MST", line[:24+sp])
			text = "pg " + strings.TrimSpace(line[24+sp:])
		} else {
			continue
		}
		if err != nil || at.Before(from.Add(-time.Millisecond)) || at.After(to) {
			continue
		}
		out = append(out, logLine{At: at, Who: who, Text: text})
	}
	return out
}

func timeline(from, to time.Time, nodes ...*patroniNode) []logLine {
	var all []logLine
	for _, n := range nodes {
		all = append(all, readLog(n.logFile(), n.Name, from, to)...)
		all = append(all, readLog(n.pgLog(), n.Name, from, to)...)
	}
	// stable by time
	for i := 1; i < len(all); i++ {
		for j := i; j > 0 && all[j].At.Before(all[j-1].At); j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
	return all
}

func printTimeline(w io.Writer, from, to time.Time, nodes ...*patroniNode) {
	for _, l := range timeline(from, to, nodes...) {
		fmt.Fprintf(w, "  %+7.3fs %-6s %s\n", l.At.Sub(from).Seconds(), l.Who, l.Text)
	}
}

// phaseMarks are the log lines that end each phase of a Patroni
// switchover, as Patroni 3.0 and PostgreSQL 15 write them; the first
// match after the command started counts. New: the candidate logs it,
// otherwise the old primary.
var phaseMarks = []struct {
	Phase string
	New   bool
	Text  string
}{
	{"demote: old primary starts demoting", false, "Demoting self (graceful)"},
	{"demote: old primary shut down", false, "LOG:  database system is shut down"},
	{"demote: old primary releases the leader key", false, "Leader key released"},
	{"promote: new primary takes the leader key", true, "promoted self to leader"},
	{"promote: new primary accepts writes", true, "LOG:  database system is ready to accept connections"},
	{"rejoin: old primary back as standby", false, "database system is ready to accept read-only connections"},
}

// patroniPhases reads both nodes' logs for the phase marks, as offsets
// from the command's start. A phase whose line is missing is left out.
func patroniPhases(start time.Time, old, new *patroniNode) map[string]time.Duration {
	lines := timeline(start, time.Now(), old, new)
	out := map[string]time.Duration{}
	for _, m := range phaseMarks {
		who := old.Name
		if m.New {
			who = new.Name
		}
		for _, l := range lines {
			if l.Who == who && strings.Contains(l.Text, m.Text) {
				out[m.Phase] = l.At.Sub(start)
				break
			}
		}
	}
	return out
}
