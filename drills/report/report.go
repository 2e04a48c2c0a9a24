// Package report is what a drill leaves behind: one Report, written as
// JSON (for machines and history), Markdown (for the ticket) and a single
// self-contained HTML page with an SVG timeline (for people who would
// rather look than read), plus the condensed history kept in etcd.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/regdr/regdr/drills/probe"
)

// Outcomes of a drill.
const (
	// Passed: every step ran, the steady state came back and every
	// expectation held.
	Passed = "passed"
	// Failed: the drill ran but an expectation did not hold, a step
	// failed, or the steady state did not come back.
	Failed = "failed"
	// Aborted: an abort condition halted the steps (the rollback ran).
	Aborted = "aborted"
	// Error: the drill could not start (steady state not reached before
	// any fault).
	Error = "error"
)

// Report is one drill run.
type Report struct {
	Scenario    string    `json:"scenario"`
	Description string    `json:"description,omitempty"`
	Tags        []string  `json:"tags,omitempty"`
	File        string    `json:"file,omitempty"`
	Target      string    `json:"target"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Outcome     string    `json:"outcome"`
	// Reasons say why the outcome is not Passed, one line each.
	Reasons     []string      `json:"reasons,omitempty"`
	AbortReason string        `json:"abort_reason,omitempty"`
	Steps       []Step        `json:"steps"`
	Probes      []Probe       `json:"probes,omitempty"`
	Metrics     Metrics       `json:"metrics"`
	Facts       Facts         `json:"facts"`
	Expect      []Expectation `json:"expectations,omitempty"`
}

// Phases of a step.
const (
	PhasePrecondition = "precondition"
	PhaseStep         = "step"
	PhaseRollback     = "rollback"
	PhaseVerify       = "verify"
)

// Step is one step as it ran.
type Step struct {
	Phase  string    `json:"phase"`
	Name   string    `json:"name"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	OK     bool      `json:"ok"`
	Error  string    `json:"error,omitempty"`
}

// Probe is one probe's samples.
type Probe struct {
	Name    string         `json:"name"`
	Rate    float64        `json:"rate"`
	Samples []probe.Sample `json:"samples"`
}

// OKRatio is the percentage of samples that passed (100 with none).
func (p Probe) OKRatio() float64 {
	if len(p.Samples) == 0 {
		return 100
	}
	n := 0
	for _, s := range p.Samples {
		if s.OK {
			n++
		}
	}
	return 100 * float64(n) / float64(len(p.Samples))
}

// Metrics are the numbers a drill is for.
type Metrics struct {
	// RTO is from the start of measure.rto.from to when measure.rto.until
	// first held; nil when not measured or never reached.
	RTOSeconds *float64  `json:"rto_seconds,omitempty"`
	RTOStart   time.Time `json:"rto_start,omitzero"`
	RTOEnd     time.Time `json:"rto_end,omitzero"`
	RTOFrom    string    `json:"rto_from,omitempty"`
	RTOUntil   string    `json:"rto_until,omitempty"`
	// RPO from the load journal: acknowledged writes the registry lost,
	// and the time span they cover.
	RPOWrites  *int     `json:"rpo_writes,omitempty"`
	RPOSeconds *float64 `json:"rpo_seconds,omitempty"`
	Lost       []int64  `json:"lost,omitempty"`
	Unexpected []int64  `json:"unexpected,omitempty"`
	Acked      int      `json:"acked,omitempty"`
	// DNSAvailability is the percentage of dns-serial probe queries the
	// secondary answered.
	DNSAvailability *float64 `json:"dns_availability,omitempty"`
	DNSQueries      int      `json:"dns_queries,omitempty"`
	// SerialMonotonic: the secondary's serial never went backwards
	// (RFC 1982 order); SerialDecreases lists where it did.
	SerialMonotonic bool     `json:"serial_monotonic"`
	SerialDecreases []string `json:"serial_decreases,omitempty"`
	FirstSerial     uint32   `json:"first_serial,omitempty"`
	LastSerial      uint32   `json:"last_serial,omitempty"`
	// DNSSECSecure is the percentage of dnssec probe answers that
	// validated as secure.
	DNSSECSecure *float64 `json:"dnssec_secure,omitempty"`
}

// Facts are what the observer saw during the drill.
type Facts struct {
	// GatesBlocked are the gates that refused a zone version during the
	// drill (any site).
	GatesBlocked []string `json:"gates_blocked,omitempty"`
	// BlockedSerials are the serials refused.
	BlockedSerials []uint32 `json:"blocked_serials,omitempty"`
	// Freezes are freeze reasons seen.
	Freezes []string `json:"freezes,omitempty"`
	// Alarms are agent problems seen.
	Alarms []string `json:"alarms,omitempty"`
	// ActiveSite at the end.
	ActiveSite          string            `json:"active_site,omitempty"`
	ReplicationCaughtUp bool              `json:"replication_caught_up"`
	Vars                map[string]string `json:"vars,omitempty"`
	Load                string            `json:"load,omitempty"`
}

// Expectation is one expect: field checked.
type Expectation struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

// Files are where Write put a report.
type Files struct {
	JSON, Markdown, HTML string
}

// Write writes the report as <dir>/<scenario>-<start>.{json,md,html}.
func Write(r *Report, dir string) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("report directory %s: %w", dir, err)
	}
	base := filepath.Join(dir, r.Scenario+"-"+r.Started.UTC().Format("20060102T150405Z"))
	f := Files{JSON: base + ".json", Markdown: base + ".md", HTML: base + ".html"}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return f, fmt.Errorf("report %s: %w", r.Scenario, err)
	}
	if err := os.WriteFile(f.JSON, append(b, '\n'), 0o644); err != nil {
		return f, fmt.Errorf("report %s: %w", f.JSON, err)
	}
	if err := os.WriteFile(f.Markdown, []byte(Markdown(r)), 0o644); err != nil {
		return f, fmt.Errorf("report %s: %w", f.Markdown, err)
	}
	h, err := HTML(r)
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.HTML, h, 0o644); err != nil {
		return f, fmt.Errorf("report %s: %w", f.HTML, err)
	}
	return f, nil
}

// Read loads a JSON report.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report %s: %w", path, err)
	}
	return &r, nil
}

func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// Duration is the drill's wall time.
func (r *Report) Duration() time.Duration { return r.Finished.Sub(r.Started) }

// Seconds rounds a duration to milliseconds, in seconds.
func Seconds(d time.Duration) float64 { return seconds(d) }
