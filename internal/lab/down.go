package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/regdr/regdr/internal/pglab"
)

// cluster rebuilds a pglab handle from the recorded state.
func (p PG) cluster() *pglab.Cluster {
	return &pglab.Cluster{Name: p.Site, BinDir: p.BinDir, Dir: p.Dir, DataDir: p.DataDir, Host: p.Host, Port: p.Port, LogFile: p.LogFile}
}

// Cluster returns the PostgreSQL cluster of a site.
func (l *Lab) Cluster(site string) (*pglab.Cluster, error) {
	for _, p := range l.State.Postgres {
		if p.Site == site && p.BinDir != "" {
			return p.cluster(), nil
		}
	}
	return nil, fmt.Errorf("lab has no PostgreSQL cluster for site %q", site)
}

func (s *State) anyRunning() bool {
	for _, p := range s.Procs {
		if alive(p.Pid) {
			return true
		}
	}
	for _, p := range s.Postgres {
		if p.BinDir != "" && p.cluster().Running() {
			return true
		}
	}
	return false
}

// Down stops every part of the lab, writers first (generator, agents) so
// nothing publishes from a half-stopped lab, then the secondary, the
// databases and etcd last. It then checks that no recorded process and no
// recorded listen address is left; the data stays on disk.
func (l *Lab) Down(ctx context.Context) error {
	st := l.State
	var errs []error
	order := []string{"zonegen", "agent-tokyo", "agent-osaka", "agent-witness", "knot"}
	for _, name := range order {
		if p, ok := st.Proc(name); ok {
			if err := stop(ctx, p, 5*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range st.Procs {
		if !strings.HasPrefix(p.Name, "etcd-") && !contains(order, p.Name) {
			if err := stop(ctx, p, 5*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range st.Postgres {
		if p.BinDir == "" {
			continue
		}
		c := p.cluster()
		if c.Running() {
			if err := c.Stop(ctx, "fast"); err != nil {
				// A wedged server must not survive `down`.
				if kerr := c.Kill(); kerr != nil {
					errs = append(errs, fmt.Errorf("stop PostgreSQL %s: %v; kill: %w", p.Site, err, kerr))
				}
			}
		}
	}
	for _, p := range st.Procs {
		if strings.HasPrefix(p.Name, "etcd-") {
			if err := stop(ctx, p, 10*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := waitUntil(ctx, 10*time.Second, "every lab port to be free", func() error {
		var busy []string
		for _, a := range st.Listen {
			if Listening(a) {
				busy = append(busy, a)
			}
		}
		if len(busy) > 0 {
			return fmt.Errorf("still listening: %s", strings.Join(busy, ", "))
		}
		return nil
	}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// PartStatus is one line of `regdr lab status`.
type PartStatus struct {
	Name    string `json:"name"`
	Pid     int    `json:"pid,omitempty"`
	Running bool   `json:"running"`
	Detail  string `json:"detail,omitempty"`
}

// Parts reports whether each lab part is running.
func (l *Lab) Parts() []PartStatus {
	var out []PartStatus
	for _, p := range l.State.Procs {
		out = append(out, PartStatus{Name: p.Name, Pid: p.Pid, Running: alive(p.Pid), Detail: p.Log})
	}
	for _, p := range l.State.Postgres {
		ps := PartStatus{Name: "postgres-" + p.Site, Detail: fmt.Sprintf("%s:%d %s", p.Host, p.Port, p.DataDir)}
		if p.BinDir != "" {
			c := p.cluster()
			ps.Running = c.Running()
			ps.Pid, _ = c.Pid()
		}
		out = append(out, ps)
	}
	return out
}
