// Package lab stands up a whole two-site regdr deployment on one machine
// from real parts: etcd (embedded in regdr processes), two PostgreSQL
// clusters with streaming replication, a sample registry, a signed TLD zone
// generated from it, both sites' agents (plus the witness's), and Knot DNS
// as the public secondary. It is both `regdr lab up` and the harness every
// integration test and drill runs against, so what the tests prove is what
// an operator tries.
//
// Every process the lab starts is recorded in <dir>/lab.json as soon as it
// starts, so `lab down` (or a test's cleanup) can stop exactly what exists,
// even after a half-finished `lab up`.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Loopback addresses per site: distinct addresses (not just ports) so a
// drill can cut one site off the network without touching the other.
var siteHosts = map[string]string{
	"tokyo":     "127.0.10.1",
	"osaka":     "127.0.20.1",
	"witness":   "127.0.30.1",
	"secondary": "127.0.40.1",
}

// State is lab.json: everything `lab down`, `lab status` and the tests need
// to find the lab's parts.
type State struct {
	Dir     string    `json:"dir"`
	TLD     string    `json:"tld"`
	Created time.Time `json:"created"`
	Config  string    `json:"config"`
	Domains int       `json:"domains"`
	Active  string    `json:"active"`
	// Bin is the regdr binary the lab's processes run.
	Bin       string   `json:"bin"`
	Etcd      []Member `json:"etcd"`
	Postgres  []PG     `json:"postgres"`
	Procs     []Proc   `json:"procs"`
	Secondary string   `json:"secondary"`
	// Resolver is the validating resolver (Unbound) that trusts the lab's
	// KSK and reaches the secondary: "secure" answers prove DNSSEC works
	// from outside.
	Resolver string `json:"resolver,omitempty"`
	// Listen is every address a lab part listens on; `lab down` checks
	// each is free again before it reports success.
	Listen []string `json:"listen"`
}

// Member is one embedded etcd member (a `regdr lab etcd` process).
type Member struct {
	Name      string `json:"name"`
	ClientURL string `json:"client_url"`
	PeerURL   string `json:"peer_url"`
	DataDir   string `json:"data_dir"`
}

// PG is one site's PostgreSQL cluster.
type PG struct {
	Site    string `json:"site"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Dir     string `json:"dir"`
	DataDir string `json:"data_dir"`
	LogFile string `json:"log_file"`
	BinDir  string `json:"bin_dir"`
}

// Proc is a long-running lab process other than PostgreSQL.
type Proc struct {
	// Name is unique in the lab: "etcd-tokyo", "agent-osaka", "knot",
	// "zonegen".
	Name string   `json:"name"`
	Pid  int      `json:"pid"`
	Args []string `json:"args"`
	Log  string   `json:"log"`
	// Group: the process leads its own process group; stop signals the
	// whole group.
	Group bool `json:"group"`
}

// StateFile is where a lab directory keeps its State.
func StateFile(dir string) string { return filepath.Join(dir, "lab.json") }

// ErrNoLab means the directory holds no lab.
var ErrNoLab = errors.New("no lab here")

// LoadState reads a lab directory's state.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(StateFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (run `regdr lab up --dir %s` first)", dir, ErrNoLab, dir)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", StateFile(dir), err)
	}
	return &s, nil
}

// Save writes the state atomically.
func (s *State) Save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := StateFile(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, StateFile(s.Dir))
}

// Proc finds a process by name.
func (s *State) Proc(name string) (Proc, bool) {
	for _, p := range s.Procs {
		if p.Name == name {
			return p, true
		}
	}
	return Proc{}, false
}

func (s *State) setProc(p Proc) {
	for i := range s.Procs {
		if s.Procs[i].Name == p.Name {
			s.Procs[i] = p
			return
		}
	}
	s.Procs = append(s.Procs, p)
}
