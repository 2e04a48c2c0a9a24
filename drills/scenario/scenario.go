// Package scenario is the drill file format: a YAML document naming a
// disaster (or a planned operation), the steady state it starts from, the
// faults and operations it applies in order, the probes that watch the
// service throughout, when to give up, how to restore, what to measure, and
// the outcome it expects.
//
// The shape follows Chaos Toolkit (steady-state hypothesis, method,
// rollbacks) and Gremlin (a halt condition on a probe), reduced to what a
// two-site registry needs. Files are decoded from yaml.v3 nodes by hand so
// that every problem, structural or semantic, is reported with
// file:line:col, and an unknown field is an error rather than silently
// ignored: a misspelt "rollbak:" must never make a drill skip its restore.
package scenario

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Pos is where something was written: 1-based line and column.
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Scenario is one drill file.
type Scenario struct {
	// File is the path the scenario was read from ("" for bytes).
	File        string   `json:"file,omitempty"`
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Target      Target   `json:"target"`
	// Preconditions are the steady state: each must hold (within its
	// time) before any step runs, and again after the rollback.
	Preconditions []Precondition `json:"preconditions,omitempty"`
	// Probes run throughout, from before the first step to after the
	// last rollback step.
	Probes []ProbeSpec `json:"probes,omitempty"`
	// Abort halts the steps and runs the rollback when a probe stays out
	// of tolerance too long.
	Abort    []Abort `json:"abort,omitempty"`
	Steps    []Step  `json:"steps"`
	Rollback []Step  `json:"rollback,omitempty"`
	Measure  Measure `json:"measure"`
	Expect   Expect  `json:"expect"`
	Pos      Pos     `json:"-"`
	// keyPos is where each top-level key's value starts, so whole-file
	// checks point at the field they are about.
	keyPos map[string]Pos
}

// at is where top-level field k was written (the document start if
// absent).
func (s *Scenario) at(k string) Pos {
	if p, ok := s.keyPos[k]; ok {
		return p
	}
	return s.Pos
}

// Target is where a drill may run.
type Target struct {
	// Production marks a drill meant for a real deployment. Running it
	// needs the --production flag and a two-person approval; without
	// this a drill only ever runs against a lab.
	Production bool `json:"production,omitempty"`
}

// Precondition is a condition the steady state must satisfy.
type Precondition struct {
	Cond Cond `json:"condition"`
	// Within is how long the runner may wait for it (default 30 s).
	Within time.Duration `json:"within,omitempty"`
	Pos    Pos           `json:"-"`
}

// ProbeSpec is a probe that runs throughout the drill.
type ProbeSpec struct {
	Probe string `json:"probe"`
	// Rate is samples per second.
	Rate float64 `json:"rate"`
	Pos  Pos     `json:"-"`
}

// Abort halts the drill when Probe has failed continuously for longer
// than FailingFor.
type Abort struct {
	Probe      string        `json:"probe"`
	FailingFor time.Duration `json:"failing_for"`
	Pos        Pos           `json:"-"`
}

// Step is one thing the drill does. Exactly one of Action, Wait, Regdr and
// Confirm is set.
type Step struct {
	// Name labels the step in reports and on the timeline; default the
	// action or kind.
	Name    string            `json:"name"`
	Action  string            `json:"action,omitempty"`
	Args    map[string]string `json:"args,omitempty"`
	Wait    *Wait             `json:"wait,omitempty"`
	Regdr   *Regdr            `json:"regdr,omitempty"`
	Confirm *Confirm          `json:"confirm,omitempty"`
	// Timeout bounds the step (default 60 s; a wait's own timeout wins).
	Timeout time.Duration `json:"timeout,omitempty"`
	Pos     Pos           `json:"-"`
	// named: Name was written, not derived.
	named bool
}

// Kind names which of the step's forms is set.
func (s Step) Kind() string {
	switch {
	case s.Action != "":
		return "action"
	case s.Wait != nil:
		return "wait"
	case s.Regdr != nil:
		return "regdr"
	case s.Confirm != nil:
		return "confirm"
	}
	return ""
}

// Wait waits for a condition (up to Timeout) or for a Duration.
type Wait struct {
	For      *Cond         `json:"for,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
}

// Regdr runs the regdr binary with the deployment's --config.
type Regdr struct {
	Args []string `json:"args"`
	// ExpectExit is the exit code that counts as success (default 0).
	ExpectExit int `json:"expect_exit"`
	// ExpectOutput, when set, must appear in stdout or stderr.
	ExpectOutput string `json:"expect_output,omitempty"`
	// Capture sets variables from the JSON the command printed: var name
	// to top-level field. Later args use them as ${name}.
	Capture map[string]string `json:"capture,omitempty"`
}

// Confirm asks an operator to confirm before the drill goes on.
type Confirm struct {
	Prompt string `json:"prompt"`
}

// Measure says what the report measures beyond the always-on metrics
// (availability, serial continuity, DNSSEC validity).
type Measure struct {
	// RTO runs from the start of step From until Until first holds.
	RTO *RTO `json:"rto,omitempty"`
	// RPO compares the load journal with the registry after the drill.
	RPO bool `json:"rpo,omitempty"`
}

// RTO is the recovery window.
type RTO struct {
	From  string `json:"from"`
	Until Cond   `json:"until"`
	Pos   Pos    `json:"-"`
}

// Expect is the outcome the drill asserts; unset fields are not checked.
type Expect struct {
	// GateBlocked: a gate of this name refused a zone version.
	GateBlocked string `json:"gate_blocked,omitempty"`
	// SecondaryServingUnchanged: the public secondary served the same
	// serial from the first fault step to the end of the steps.
	SecondarySerialUnchanged *bool `json:"secondary_serial_unchanged,omitempty"`
	// Frozen: a zone was frozen with a reason starting with this word.
	Frozen string `json:"frozen,omitempty"`
	// LostWrites and UnexpectedWrites come from the load journal.
	LostWrites       *int `json:"lost_writes,omitempty"`
	UnexpectedWrites *int `json:"unexpected_writes,omitempty"`
	// SerialMonotonic: the secondary's serial never went backwards.
	SerialMonotonic *bool `json:"serial_monotonic,omitempty"`
	// DNSSECValid: every DNSSEC probe answer validated.
	DNSSECValid *bool `json:"dnssec_valid,omitempty"`
	// MinDNSAvailability is the least percentage of DNS probe queries
	// answered.
	MinDNSAvailability *float64 `json:"min_dns_availability,omitempty"`
	// MaxRTO bounds the measured RTO.
	MaxRTO time.Duration `json:"max_rto,omitempty"`
	// ActiveSite is the active site after the drill.
	ActiveSite string `json:"active_site,omitempty"`
	// Alarm: an agent reported a problem containing this text.
	Alarm string `json:"alarm,omitempty"`
	// ReplicationCaughtUp: the standby replayed everything after the
	// drill.
	ReplicationCaughtUp *bool `json:"replication_caught_up,omitempty"`
	// Aborted: the drill is expected to halt on its abort condition.
	Aborted *bool `json:"aborted,omitempty"`
}

// Cond is a condition: a name from Conditions and its arguments, written
// as one string ("zone-blocked origin", "active-site osaka").
type Cond struct {
	Name string   `json:"name"`
	Args []string `json:"args,omitempty"`
	Pos  Pos      `json:"-"`
}

func (c Cond) String() string { return strings.Join(append([]string{c.Name}, c.Args...), " ") }

// MarshalText writes the condition as it is written in a file.
func (c Cond) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// CondSpec describes a condition: how many arguments and what it means.
type CondSpec struct {
	MinArgs, MaxArgs int
	Usage, Help      string
}

// Conditions is the vocabulary of conditions a scenario may test. The
// runner implements each; validation refuses anything else.
var Conditions = map[string]CondSpec{
	"dns-answering":             {0, 0, "dns-answering", "the public secondary answers the zone's SOA"},
	"dnssec-secure":             {0, 0, "dnssec-secure", "the validating resolver answers the SOA as secure"},
	"registry-writable":         {0, 0, "registry-writable", "a probe write to the registry database commits"},
	"agents-healthy":            {0, 0, "agents-healthy", "every agent answers with health ok"},
	"agent-down":                {1, 1, "agent-down SITE", "the site's agent does not answer"},
	"agent-up":                  {1, 1, "agent-up SITE", "the site's agent answers"},
	"zone-blocked":              {0, 1, "zone-blocked [GATE]", "the active site holds a zone version the gates refused (by GATE)"},
	"zone-frozen":               {0, 1, "zone-frozen [REASON]", "the zone is frozen (with a reason starting with REASON)"},
	"zone-thawed":               {0, 0, "zone-thawed", "the zone is not frozen"},
	"secondary-in-sync":         {0, 0, "secondary-in-sync", "the secondary serves the serial the active site serves"},
	"secondary-serial-advanced": {0, 0, "secondary-serial-advanced", "the secondary serves a newer serial than when the steps began"},
	"replication-caught-up":     {0, 0, "replication-caught-up", "the standby streams with no replay lag behind the primary"},
	"active-site":               {1, 1, "active-site SITE", "etcd names SITE the active site"},
	"postgres-up":               {1, 1, "postgres-up SITE", "the site's PostgreSQL accepts connections"},
	"postgres-down":             {1, 1, "postgres-down SITE", "the site's PostgreSQL refuses connections"},
	"alarm":                     {1, 12, "alarm TEXT", "an agent reports a problem (or a failed or stale backup restore test) containing TEXT"},
}

// ArgSpec lists an action's required and optional arguments.
type ArgSpec struct {
	Required, Optional []string
	Help               string
}

// Actions is the vocabulary of fault and lab actions.
var Actions = map[string]ArgSpec{
	"stop-postgres":        {[]string{"site"}, nil, "stop the site's PostgreSQL (pg_ctl -m fast)"},
	"kill-postgres":        {[]string{"site"}, nil, "SIGKILL the site's postmaster (a crash)"},
	"start-postgres":       {[]string{"site"}, nil, "start the site's PostgreSQL again"},
	"kill-agent":           {[]string{"site"}, nil, "SIGKILL the site's agent"},
	"start-agent":          {[]string{"site"}, nil, "start the site's agent and wait until it answers"},
	"restart-agent":        {[]string{"site"}, nil, "kill and start the site's agent"},
	"cut-site":             {[]string{"site"}, nil, "drop every packet to and from the site's lab ports (nftables)"},
	"restore-site":         {[]string{"site"}, nil, "remove the cut-site rules"},
	"add-latency":          {[]string{"site", "delay"}, nil, "delay packets to the site's address (tc netem on lo)"},
	"clear-latency":        {[]string{"site"}, nil, "remove the added latency"},
	"stop-generator":       {nil, nil, "stop the registry's zone generator"},
	"start-generator":      {nil, nil, "start the zone generator again"},
	"trailing-dot":         {nil, []string{"names"}, "write the current zone with NAMES owner names missing their trailing dot (.se 2009)"},
	"partial-zone":         {nil, []string{"fraction"}, "write the current zone cut off after FRACTION of its lines (.hk 2004)"},
	"lose-zone-store":      {[]string{"site"}, nil, "kill the site's agent, delete its zone store and zone files, start it (RIPE 2012)"},
	"empty-zonelet":        {nil, nil, "publish a signed zone holding only the apex (RIPE 2017)"},
	"remove-key":           {[]string{"site"}, []string{"which"}, "delete a DNSSEC key pair (which: zsk|ksk) from the site's key_dir"},
	"delete-newest-backup": {nil, nil, "delete the newest backup from the catalog"},
	"start-load":           {nil, []string{"rate"}, "start registry write load (writes/s, default 20), journalled"},
	"stop-load":            {nil, nil, "stop the write load"},
}

// Probes is the vocabulary of probes.
var Probes = map[string]struct {
	DefaultRate, MinRate float64
	Help                 string
}{
	"dns-serial":     {10, 10, "SOA serial at the public secondary (availability and serial continuity)"},
	"dnssec":         {2, 0.1, "SOA through the validating resolver: secure or not"},
	"registry-write": {2, 0.1, "a probe write to the registry database"},
	"agent-health":   {1, 0.1, "every agent's /v1/status health"},
}

// names returns the sorted keys of a vocabulary, for error messages.
func names[V any](m map[string]V) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// ParseCond parses a condition string. It checks the vocabulary and the
// argument count.
func ParseCond(s string) (Cond, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return Cond{}, fmt.Errorf("empty condition; want one of %s", names(Conditions))
	}
	spec, ok := Conditions[f[0]]
	if !ok {
		return Cond{}, fmt.Errorf("unknown condition %q; want one of %s", f[0], names(Conditions))
	}
	if n := len(f) - 1; n < spec.MinArgs || n > spec.MaxArgs {
		return Cond{}, fmt.Errorf("condition %q takes %s: usage %q", s, argCount(spec.MinArgs, spec.MaxArgs), spec.Usage)
	}
	return Cond{Name: f[0], Args: f[1:]}, nil
}

func argCount(lo, hi int) string {
	switch {
	case lo == hi && lo == 0:
		return "no arguments"
	case lo == hi:
		return fmt.Sprintf("%d argument(s)", lo)
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}

// Arg returns the condition's i-th argument or "".
func (c Cond) Arg(i int) string {
	if i < len(c.Args) {
		return c.Args[i]
	}
	return ""
}
