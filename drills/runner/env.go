package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/regdr/regdr/drills/load"
	"github.com/regdr/regdr/drills/probe"
	"github.com/regdr/regdr/drills/scenario"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/internal/store"
)

// Faults applies a scenario's actions (scenario.Actions) to the
// deployment. Do blocks until the action is done or ctx ends; detail is a
// short line for the report ("tokyo PostgreSQL stopped"). Actions are
// idempotent where they can be (start what runs already succeeds), since
// the rollback may repeat a step the drill already undid. Not called
// concurrently.
type Faults interface {
	Do(ctx context.Context, action string, args map[string]string) (detail string, err error)
}

// Observer looks at the deployment. Observe must return within ctx's
// deadline, recording what it could not see in the Observation rather
// than failing; Probe returns the function of a named probe
// (scenario.Probes). Both may be called concurrently.
type Observer interface {
	Observe(ctx context.Context) Observation
	Probe(name string) (probe.Func, error)
}

// Commander runs the regdr command line against the deployment (the
// runner adds --config). Vars are the variables a step may use
// (scenario.Vars).
type Commander interface {
	Regdr(ctx context.Context, args []string) (stdout, stderr string, code int, err error)
	Vars() map[string]string
}

// Loader ends the write load, if a step started one, and compares its
// journal with the registry. nil Verdict: no load ran.
type Loader interface {
	FinishLoad(ctx context.Context) (*LoadResult, error)
}

// LoadResult is a finished load run.
type LoadResult struct {
	Stats   load.Stats
	Verdict load.Verdict
	// Records are the run's journal records (for the RPO in seconds).
	Records []load.Record
}

// Observation is one look at the deployment, everything a condition can
// ask about.
type Observation struct {
	At time.Time `json:"at"`
	// Zone is the drill's zone (the lab TLD).
	Zone            string `json:"zone"`
	SecondarySerial uint32 `json:"secondary_serial,omitempty"`
	SecondaryErr    string `json:"secondary_error,omitempty"`
	Secure          bool   `json:"secure"`
	SecureErr       string `json:"secure_error,omitempty"`
	Writable        bool   `json:"writable"`
	WriteErr        string `json:"write_error,omitempty"`
	ActiveSite      string `json:"active_site,omitempty"`
	ActiveErr       string `json:"active_error,omitempty"`
	// Agents by site; a site whose agent did not answer is absent and
	// has its error in AgentErr.
	Agents   map[string]*status.Agent `json:"-"`
	AgentErr map[string]string        `json:"agent_errors,omitempty"`
	// Sites are all the sites with agents.
	Sites      []string          `json:"sites"`
	Freezes    []store.Freeze    `json:"freezes,omitempty"`
	FreezeErr  string            `json:"freeze_error,omitempty"`
	CaughtUp   bool              `json:"caught_up"`
	ReplDetail string            `json:"replication,omitempty"`
	PostgresUp map[string]bool   `json:"postgres_up,omitempty"`
	PGErr      map[string]string `json:"postgres_errors,omitempty"`
}

// Baseline is what conditions compare against: the state when the steps
// began.
type Baseline struct {
	Since  time.Time
	Serial uint32
}

// Eval decides a condition from an observation: nil when it holds, else
// why not. Pure, so conditions are table-tested without a lab.
func Eval(c scenario.Cond, o Observation, b Baseline) error {
	zone := store.CanonicalZone(o.Zone)
	switch c.Name {
	case "dns-answering":
		if o.SecondaryErr != "" {
			return errors.New(o.SecondaryErr)
		}
		return nil
	case "dnssec-secure":
		if !o.Secure {
			return fmt.Errorf("not secure: %s", o.SecureErr)
		}
		return nil
	case "registry-writable":
		if !o.Writable {
			return fmt.Errorf("registry not writable: %s", o.WriteErr)
		}
		return nil
	case "agents-healthy":
		var bad []string
		for _, s := range o.Sites {
			a := o.Agents[s]
			switch {
			case a == nil:
				bad = append(bad, fmt.Sprintf("%s: %s", s, o.AgentErr[s]))
			case a.Health != "ok":
				bad = append(bad, fmt.Sprintf("%s: health %s %s", s, a.Health, strings.Join(a.Problems, "; ")))
			}
		}
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, "; "))
		}
		return nil
	case "agent-down":
		if o.Agents[c.Arg(0)] != nil {
			return fmt.Errorf("agent %s answers", c.Arg(0))
		}
		return nil
	case "agent-up":
		if o.Agents[c.Arg(0)] == nil {
			return fmt.Errorf("agent %s does not answer: %s", c.Arg(0), o.AgentErr[c.Arg(0)])
		}
		return nil
	case "zone-blocked":
		for _, b2 := range blockedSince(o, b.Since) {
			if c.Arg(0) == "" || slices.Contains(b2.Gates, c.Arg(0)) {
				return nil
			}
		}
		if c.Arg(0) != "" {
			return fmt.Errorf("no zone version blocked by the %s gate since the steps began", c.Arg(0))
		}
		return errors.New("no zone version blocked since the steps began")
	case "zone-frozen":
		if o.FreezeErr != "" {
			return fmt.Errorf("freezes unknown: %s", o.FreezeErr)
		}
		for _, f := range o.Freezes {
			if (f.Zone == zone || f.Zone == "") && strings.HasPrefix(f.Reason, c.Arg(0)) {
				return nil
			}
		}
		if c.Arg(0) != "" {
			return fmt.Errorf("%s is not frozen with a reason starting %q", o.Zone, c.Arg(0))
		}
		return fmt.Errorf("%s is not frozen", o.Zone)
	case "zone-thawed":
		if o.FreezeErr != "" {
			return fmt.Errorf("freezes unknown: %s", o.FreezeErr)
		}
		for _, f := range o.Freezes {
			if f.Zone == zone || f.Zone == "" {
				return fmt.Errorf("still frozen by %s: %s", f.By, f.Reason)
			}
		}
		return nil
	case "secondary-in-sync":
		if o.SecondaryErr != "" {
			return errors.New(o.SecondaryErr)
		}
		a := o.Agents[o.ActiveSite]
		if a == nil {
			return fmt.Errorf("active site %q agent not seen", o.ActiveSite)
		}
		for _, z := range a.Zones {
			if store.CanonicalZone(z.Origin) == zone {
				if z.Serial != o.SecondarySerial {
					return fmt.Errorf("secondary serves %d, %s serves %d", o.SecondarySerial, o.ActiveSite, z.Serial)
				}
				return nil
			}
		}
		return fmt.Errorf("%s does not serve %s", o.ActiveSite, o.Zone)
	case "secondary-serial-advanced":
		if o.SecondaryErr != "" {
			return errors.New(o.SecondaryErr)
		}
		if !serialAfter(o.SecondarySerial, b.Serial) {
			return fmt.Errorf("secondary serves %d, not newer than %d", o.SecondarySerial, b.Serial)
		}
		return nil
	case "replication-caught-up":
		if !o.CaughtUp {
			return fmt.Errorf("replication: %s", o.ReplDetail)
		}
		return nil
	case "active-site":
		if o.ActiveErr != "" {
			return errors.New(o.ActiveErr)
		}
		if o.ActiveSite != c.Arg(0) {
			return fmt.Errorf("active site is %q", o.ActiveSite)
		}
		return nil
	case "alarm":
		text := strings.Join(c.Args, " ")
		for _, a := range Alarms(o) {
			if strings.Contains(a, text) {
				return nil
			}
		}
		return fmt.Errorf("no agent reports %q", text)
	case "postgres-up":
		if !o.PostgresUp[c.Arg(0)] {
			return fmt.Errorf("%s PostgreSQL: %s", c.Arg(0), o.PGErr[c.Arg(0)])
		}
		return nil
	case "postgres-down":
		if o.PostgresUp[c.Arg(0)] {
			return fmt.Errorf("%s PostgreSQL accepts connections", c.Arg(0))
		}
		return nil
	}
	return fmt.Errorf("condition %q is not implemented", c.Name)
}

// blockedSince returns the blocked versions any agent reports that were
// refused after since: an older refusal is the previous drill's.
func blockedSince(o Observation, since time.Time) []*status.BlockedVersion {
	var out []*status.BlockedVersion
	for _, s := range o.Sites {
		a := o.Agents[s]
		if a == nil {
			continue
		}
		for _, z := range a.Zones {
			if z.Blocked != nil && !z.Blocked.At.Before(since) && store.CanonicalZone(z.Origin) == store.CanonicalZone(o.Zone) {
				out = append(out, z.Blocked)
			}
		}
	}
	return out
}

// serialAfter is RFC 1982 serial order: a is newer than b.
func serialAfter(a, b uint32) bool { return a != b && int32(a-b) > 0 }

// Alarms are the problems agents report, plus what their backup status
// says about the restore tests (a failed or stale test is an alarm even
// where the agent does not count it among its problems), each prefixed
// with the site.
func Alarms(o Observation) []string {
	var out []string
	for _, s := range o.Sites {
		a := o.Agents[s]
		if a == nil {
			continue
		}
		for _, p := range a.Problems {
			out = append(out, s+": "+p)
		}
		if b := a.Backup; b != nil {
			if b.LastResult == "failed" {
				out = append(out, fmt.Sprintf("%s: backup restore test of %s failed: %s", s, b.LastRunID, b.LastFailure))
			}
			if b.Stale {
				out = append(out, fmt.Sprintf("%s: backup stale: no restore test passed within backup.max_age", s))
			}
		}
	}
	return out
}
