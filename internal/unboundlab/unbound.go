package unboundlab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/portcheck"
)

// Timeouts for a context without a deadline. Unbound starts in well under
// a second; these only bound a hang.
const (
	defaultStartTimeout = 15 * time.Second
	defaultStopTimeout  = 10 * time.Second
	pollInterval        = 20 * time.Millisecond
)

// Prepare writes the config for o, has unbound-checkconf accept it, and
// returns the command line that runs the resolver in the foreground. The
// lab starts that command with its own process tracking; Start is the
// same for tests that own the process.
func Prepare(ctx context.Context, o Options) (argv []string, err error) {
	paths, err := Find()
	if err != nil {
		return nil, err
	}
	conf, err := WriteConfig(o)
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, paths.Checkconf, conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unbound: unbound-checkconf %s: %w: %s", conf, err, strings.TrimSpace(string(out)))
	}
	// -d: stay in the foreground (the caller tracks and stops the
	// process); with logfile "" everything goes to stderr.
	return []string{paths.Unbound, "-d", "-c", conf}, nil
}

// Server is a running unbound.
type Server struct {
	opts Options
	cmd  *exec.Cmd
	log  string

	done    chan struct{} // closed when unbound has exited and been reaped
	waitErr error
	// ready is set once unbound answered; only then is the listen port
	// ours to wait for on Stop.
	ready bool

	stopOnce sync.Once
	stopErr  error
}

// Start runs Unbound for o as a child in its own process group, output to
// <Dir>/unbound.log, and returns once it answers on o.Listen.
func Start(ctx context.Context, o Options) (*Server, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	argv, err := Prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	logPath := o.Dir + "/unbound.log"
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("unbound: %w", err)
	}
	// Not CommandContext: ctx bounds the start, not the daemon's life.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("unbound: start %s: %w", argv[0], err)
	}
	s := &Server{opts: o, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		out.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), defaultStopTimeout)
		defer cancel()
		s.Stop(stopCtx)
		return nil, fmt.Errorf("unbound on %s: %w\n%s", o.Listen, err, s.LogTail())
	}
	s.ready = true
	return s, nil
}

// WaitAnswering polls addr until the resolver answers a query (any rcode:
// it is up, whatever it thinks of the zone) or ctx ends.
func WaitAnswering(ctx context.Context, addr, name string) error {
	var last error
	for {
		c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeSOA)
		_, _, err := c.ExchangeContext(ctx, m, addr)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("resolver %s not answering: %w (last: %v)", addr, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

func (s *Server) waitReady(ctx context.Context) error {
	ready := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { ready <- WaitAnswering(wctx, s.Addr(), s.opts.Zones[0].Origin) }()
	select {
	case err := <-ready:
		return err
	case <-s.done:
		return fmt.Errorf("unbound exited during start: %v", s.waitErr)
	}
}

// Addr is where the resolver answers.
func (s *Server) Addr() string { return s.opts.Listen.String() }

// Pid is unbound's process id (also its process group id).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// ConfigPath is the config file unbound runs with.
func (s *Server) ConfigPath() string { return s.opts.ConfigPath() }

// LogPath is where unbound's output goes.
func (s *Server) LogPath() string { return s.log }

// Running reports whether unbound is still running.
func (s *Server) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to unbound's group, SIGKILLs it if it has not exited
// in time, reaps it, and waits until the listen port is free again. Safe
// to call more than once.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStopTimeout)
		defer cancel()
	}
	pid := s.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	grace := time.NewTimer(3 * time.Second)
	select {
	case <-s.done:
	case <-grace.C:
	case <-ctx.Done():
	}
	grace.Stop()
	select {
	case <-s.done:
	default:
		syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-s.done:
		case <-ctx.Done():
			return fmt.Errorf("unbound pid %d: not reaped after SIGKILL: %w", pid, ctx.Err())
		}
	}
	if !s.ready {
		return nil
	}
	for {
		err := portcheck.Free(s.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unbound pid %d stopped but %s is still in use: %w", pid, s.Addr(), err)
		case <-time.After(pollInterval):
		}
	}
}

// LogTail is the end of unbound's log, for error messages. The log holds
// no secret: the resolver has none.
func (s *Server) LogTail() string {
	data, err := os.ReadFile(s.log)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return fmt.Sprintf("--- %s:\n%s\n", s.log, bytes.Join(lines, []byte("\n")))
}
