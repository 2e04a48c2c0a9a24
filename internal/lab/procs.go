package lab

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// spawn starts a detached process (own session, output to a log file) that
// outlives the command that started it: `regdr lab up` returns while the
// lab keeps running.
func spawn(name, logFile string, argv []string, env []string) (Proc, error) {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Proc{}, fmt.Errorf("start %s: log file: %w", name, err)
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := Proc{Name: name, Pid: cmd.Process.Pid, Args: argv, Log: logFile, Group: true}
	// Reap it in the background while we live, so a process that dies
	// early does not linger as a zombie that looks alive.
	go func() { _ = cmd.Wait() }()
	return p, nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3 is the state; the command name (field 2) may contain
	// spaces, so look after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// stop sends SIGTERM (to the group when the process leads one), waits up
// to grace, then SIGKILLs.
func stop(ctx context.Context, p Proc, grace time.Duration) error {
	if !alive(p.Pid) {
		return nil
	}
	sig := func(s syscall.Signal) {
		if p.Group {
			_ = syscall.Kill(-p.Pid, s)
		}
		_ = syscall.Kill(p.Pid, s)
	}
	sig(syscall.SIGTERM)
	if waitGone(ctx, p.Pid, grace) {
		return nil
	}
	sig(syscall.SIGKILL)
	if waitGone(ctx, p.Pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) did not exit", p.Name, p.Pid)
}

// Kill SIGKILLs a lab process (a drill's "kill the agent"), without grace.
func Kill(p Proc) error {
	if p.Group {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	}
	if err := syscall.Kill(p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.Pid, err)
	}
	waitGone(context.Background(), p.Pid, 5*time.Second)
	return nil
}

func waitGone(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) && threadsGone(pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return !alive(pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return !alive(pid)
}

// freePort returns a TCP port on host that nothing listens on now. UDP on
// the same port is checked too, for DNS and gossip.
func freePort(host string) (int, error) {
	lo, hi := labPortRange()
	for range 200 {
		port := lo + mrand.IntN(hi-lo)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		u, uerr := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		l.Close()
		if uerr == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free TCP+UDP port on %s in %d-%d", host, lo, hi)
}

// labPortRange is where the lab's listeners live: below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range), so an outgoing
// connection can never take the port of a lab process that is being
// restarted (an agent's gossip port was taken that way by a NOTIFY's
// source port while the agent was down).
func labPortRange() (lo, hi int) {
	lo, hi = 20000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start > 2048 {
			hi = start
			lo = max(1024, start-12768)
		}
	}
	return lo, hi
}

// Listening reports whether something accepts TCP connections on addr.
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitUntil polls cond until it returns nil or ctx/d expire; the last
// error says what was being waited for.
func waitUntil(ctx context.Context, d time.Duration, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		if last = cond(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %s for %s: %w", d, what, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// threadsGone reports whether a dead process's other threads have finished
// exiting too: its group leader turns zombie first, and its sockets close
// only when the last thread is gone.
func threadsGone(pid int) bool {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	return err != nil || len(ents) <= 1
}
