package knotlab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/regdr/regdr/internal/portcheck"
)

// Timeouts for a context without a deadline. Knot starts in well under a
// second on loopback; these only bound a hang.
const (
	defaultStartTimeout = 15 * time.Second
	defaultStopTimeout  = 10 * time.Second
	pollInterval        = 20 * time.Millisecond
)

// Knot is a running knotd.
type Knot struct {
	cfg   Config
	paths Paths
	conf  string
	cmd   *exec.Cmd
	out   *os.File

	done    chan struct{} // closed when knotd has exited and been reaped
	waitErr error
	// ready is set once knotd answered; only then is the listen port
	// ours to wait for on Stop.
	ready bool

	stopOnce sync.Once
	stopErr  error
}

// Start writes the config, checks it with `knotc conf-check`, runs knotd
// in the foreground as a child in its own process group (so a lab can
// kill the group), and returns once `knotc status` answers and the listen
// port accepts TCP connections.
func Start(ctx context.Context, c Config) (*Knot, error) {
	paths, err := Find()
	if err != nil {
		return nil, err
	}
	conf, err := WriteConfig(c)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	if out, err := exec.CommandContext(ctx, paths.Knotc, "-c", conf, "conf-check").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("knot: conf-check %s: %w: %s", conf, err, strings.TrimSpace(string(out)))
	}

	outPath := c.Dir + "/knotd.out"
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("knot: %w", err)
	}
	// Not CommandContext: ctx bounds the start, not the daemon's life.
	cmd := exec.Command(paths.Knotd, "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("knot: start %s: %w", paths.Knotd, err)
	}
	k := &Knot{cfg: c, paths: paths, conf: conf, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		k.waitErr = cmd.Wait()
		out.Close()
		close(k.done)
	}()

	if err := k.waitReady(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), defaultStopTimeout)
		defer cancel()
		k.Stop(stopCtx)
		return nil, fmt.Errorf("knot on %s: %w\n%s", c.Listen, err, k.logTail())
	}
	k.ready = true
	return k, nil
}

func (k *Knot) waitReady(ctx context.Context) error {
	var last error
	for {
		select {
		case <-k.done:
			return fmt.Errorf("knotd exited during start: %v", k.waitErr)
		default:
		}
		out, err := exec.CommandContext(ctx, k.paths.Knotc, "-c", k.conf, "-t", "1", "status").CombinedOutput()
		if err == nil {
			var d net.Dialer
			conn, derr := d.DialContext(ctx, "tcp", k.cfg.Listen.String())
			if derr == nil {
				conn.Close()
				return nil
			}
			last = derr
		} else {
			last = fmt.Errorf("knotc status: %v: %s", err, strings.TrimSpace(string(out)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-k.done:
			return fmt.Errorf("knotd exited during start: %v", k.waitErr)
		case <-time.After(pollInterval):
		}
	}
}

// Pid is knotd's process id (also its process group id).
func (k *Knot) Pid() int { return k.cmd.Process.Pid }

// Addr is where Knot answers.
func (k *Knot) Addr() string { return k.cfg.Listen.String() }

// ConfigPath is the config file knotd runs with.
func (k *Knot) ConfigPath() string { return k.conf }

// Paths are the executables in use.
func (k *Knot) Paths() Paths { return k.paths }

// Stop asks knotd to stop (knotc stop), kills its process group if it has
// not exited in time, reaps it, and waits until the listen port is free
// again, so the next Start on the same port cannot race the old daemon.
// Safe to call more than once.
func (k *Knot) Stop(ctx context.Context) error {
	k.stopOnce.Do(func() { k.stopErr = k.stop(ctx) })
	return k.stopErr
}

func (k *Knot) stop(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStopTimeout)
		defer cancel()
	}
	select {
	case <-k.done:
	default:
		// A graceful stop first; its "OK" only means queued, so we
		// still wait for the process below.
		stopCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		exec.CommandContext(stopCtx, k.paths.Knotc, "-c", k.conf, "-t", "1", "stop").Run()
		cancel()
		grace := time.NewTimer(3 * time.Second)
		select {
		case <-k.done:
		case <-grace.C:
		case <-ctx.Done():
		}
		grace.Stop()
	}
	select {
	case <-k.done:
	default:
		syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-k.done:
		case <-ctx.Done():
			return fmt.Errorf("knot pid %d: not reaped after SIGKILL: %w", k.Pid(), ctx.Err())
		}
	}
	// Children of knotd, if any, die with the group.
	syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	if !k.ready {
		return nil
	}
	for {
		if err := portcheck.Free(k.cfg.Listen.String()); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("knot pid %d stopped but %s is still in use: %w", k.Pid(), k.cfg.Listen, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollInterval):
		}
	}
}

// logTail is the end of Knot's log and output files, for error messages.
// Knot does not log TSIG secrets.
func (k *Knot) logTail() string {
	var b strings.Builder
	for _, p := range []string{k.cfg.LogPath(), k.cfg.Dir + "/knotd.out"} {
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		fmt.Fprintf(&b, "--- %s:\n%s\n", p, bytes.Join(lines, []byte("\n")))
	}
	return b.String()
}

// Kdig runs kdig against this Knot with args (e.g. "example.", "SOA",
// "+short") and returns its standard output.
func (k *Knot) Kdig(ctx context.Context, args ...string) (string, error) {
	a := append([]string{"@" + k.cfg.Listen.Addr().String(), "-p", strconv.Itoa(int(k.cfg.Listen.Port()))}, args...)
	cmd := exec.CommandContext(ctx, k.paths.Kdig, a...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kdig %s: %w: %s", strings.Join(a, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// SerialKdig is the SOA serial Knot serves for origin, read with
// `kdig @knot origin SOA +short`.
func (k *Knot) SerialKdig(ctx context.Context, origin string) (uint32, error) {
	out, err := k.Kdig(ctx, origin, "SOA", "+short", "+time=1", "+retry=0")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	if len(f) < 7 {
		return 0, fmt.Errorf("kdig %s SOA +short: unexpected output %q", origin, out)
	}
	n, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("kdig %s SOA +short: serial %q: %w", origin, f[2], err)
	}
	return uint32(n), nil
}

// Running reports whether knotd is still running.
func (k *Knot) Running() bool {
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}
