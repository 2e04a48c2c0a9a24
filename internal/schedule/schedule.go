// Package schedule runs recurring jobs from the config's five-field cron
// expressions, exactly once per fire time across every agent that has the
// same schedule.
//
// Each agent computes the same fire times ("slots") from the same
// expression. Before running a slot it claims the key
// <prefix>/schedule/<job>/<slot unix seconds> with a create-if-absent
// transaction: etcd serialises the transactions, so one agent wins and the
// others see the key and skip the slot. That is the whole election; there is
// no leader to lose and re-elect between slots, and an agent that is down
// simply never claims. The claim is put under a lease (default 48 h) so the
// keys of old slots go away by themselves, but it outlives any plausible
// clock skew between agents, so a late agent can never claim a slot twice.
//
// Time comes from a Clock, so tests run a minute-by-minute schedule in
// milliseconds.
package schedule

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Schedule is a parsed five-field cron expression (minute hour
// day-of-month month day-of-week), evaluated in UTC.
type Schedule struct {
	expr  string
	sched cron.Schedule
}

// parser accepts exactly the classic five fields; config.checkCron already
// refused names and macros, this refuses them again for callers that did
// not go through the config.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Parse parses a five-field cron expression.
func Parse(expr string) (*Schedule, error) {
	if strings.HasPrefix(strings.TrimSpace(expr), "@") {
		return nil, fmt.Errorf("cron %q: macros are not accepted, write the five fields", expr)
	}
	s, err := parser.Parse(sundaySeven(expr))
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	return &Schedule{expr: expr, sched: s}, nil
}

// sundaySeven rewrites a day-of-week field that uses 7 for Sunday (Vixie
// cron and the config accept 0-7) into 0-6, which the parser wants: the
// field is expanded to an explicit list. Anything malformed is left for the
// parser to refuse.
func sundaySeven(expr string) string {
	f := strings.Fields(expr)
	if len(f) != 5 || !strings.Contains(f[4], "7") {
		return expr
	}
	var days [7]bool
	for item := range strings.SplitSeq(f[4], ",") {
		rng, stepS, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepS)
			if err != nil || n < 1 {
				return expr
			}
			step = n
		}
		lo, hi := 0, 7
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = strconv.Atoi(a); err != nil {
				return expr
			}
			hi = lo
			if isRange {
				if hi, err = strconv.Atoi(b); err != nil {
					return expr
				}
			} else if hasStep {
				hi = 7
			}
		}
		if lo < 0 || hi > 7 || lo > hi {
			return expr
		}
		for d := lo; d <= hi; d += step {
			days[d%7] = true
		}
	}
	var list []string
	for d, on := range days {
		if on {
			list = append(list, strconv.Itoa(d))
		}
	}
	f[4] = strings.Join(list, ",")
	return strings.Join(f, " ")
}

// String is the expression as given.
func (s *Schedule) String() string { return s.expr }

// Next is the first fire time strictly after t, in UTC (sites in different
// time zones must agree on the slots, or they would not contend for them).
func (s *Schedule) Next(t time.Time) time.Time {
	return s.sched.Next(t.UTC())
}

// Clock is the time source of a Runner.
type Clock interface {
	Now() time.Time
	// SleepUntil returns when t has come, or ctx's error.
	SleepUntil(ctx context.Context, t time.Time) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// SleepUntil waits for t. It re-reads the clock after each wake-up, capped
// at a minute, so a wall-clock step (NTP, a suspended VM) does not leave
// it sleeping for the old duration.
func (RealClock) SleepUntil(ctx context.Context, t time.Time) error {
	for {
		d := time.Until(t)
		if d <= 0 {
			return nil
		}
		timer := time.NewTimer(min(d, time.Minute))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// Claim is the record kept at a slot key: who ran the slot.
type Claim struct {
	Job       string    `json:"job"`
	Slot      time.Time `json:"slot"`
	Owner     string    `json:"owner"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// ErrClaimed is returned (wrapped) by Claim when another owner already
// holds the slot.
var ErrClaimed = errors.New("slot already claimed")

// DefaultClaimTTL is how long a slot key lives: two days, far longer than
// any clock skew or restart between agents, short enough that a minutely
// job leaves a bounded number of keys behind.
const DefaultClaimTTL = 48 * time.Hour

// SlotKey is the claim key of job's slot under prefix (e.g. "/regdr").
func SlotKey(prefix, job string, slot time.Time) string {
	p := strings.TrimRight(prefix, "/")
	if p == "" {
		p = "/regdr"
	}
	return p + "/schedule/" + job + "/" + strconv.FormatInt(slot.Unix(), 10)
}

// ClaimSlot claims job's slot for owner: it creates the slot key, under a
// fresh lease of ttl, only if the key does not exist. It returns
// ErrClaimed (wrapped, naming the holder) if another claim was first.
func ClaimSlot(ctx context.Context, cli *clientv3.Client, prefix, job string, slot time.Time, owner string, now time.Time, ttl time.Duration) error {
	key := SlotKey(prefix, job, slot)
	ttl = cmp.Or(ttl, DefaultClaimTTL)
	val, err := json.Marshal(Claim{Job: job, Slot: slot.UTC(), Owner: owner, ClaimedAt: now.UTC()})
	if err != nil {
		return fmt.Errorf("claim %s: %w", key, err)
	}
	lease, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return fmt.Errorf("claim %s: grant lease: %w", key, err)
	}
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("claim %s: %w", key, err)
	}
	if resp.Succeeded {
		return nil
	}
	// Lost: the unused lease would otherwise live its whole TTL. Failing
	// to revoke costs only that, so it is not an error.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = cli.Revoke(rctx, lease.ID)
	holder := "?"
	if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
		var c Claim
		if json.Unmarshal(rr.Kvs[0].Value, &c) == nil {
			holder = c.Owner
		}
	}
	return fmt.Errorf("claim %s for %s: held by %s: %w", key, owner, holder, ErrClaimed)
}

// Job is one recurring piece of work.
type Job struct {
	// Name identifies the job in slot keys and logs: "backup-verify",
	// "drill-planned-switchover". Every agent must use the same name.
	Name string
	// Cron is the five-field expression.
	Cron string
	// Run does the work for slot. Its error is logged; the next slot runs
	// regardless. A run longer than the period skips the slots it overran
	// (they are not queued up).
	Run func(ctx context.Context, slot time.Time) error
}

// Runner runs jobs on their schedules, electing through etcd.
type Runner struct {
	Client *clientv3.Client
	// Prefix is the deployment's etcd prefix (config etcd.prefix).
	Prefix string
	// Owner names this runner in claims: "agent/osaka".
	Owner string
	// Clock defaults to RealClock.
	Clock Clock
	// ClaimTTL defaults to DefaultClaimTTL.
	ClaimTTL time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Eligible, if set, is asked before each claim; false skips the slot
	// without claiming it, so an agent that should not run the job (not
	// the verify site, fenced) leaves it to one that should.
	Eligible func(ctx context.Context) bool
}

// Run runs job until ctx is done, then returns ctx's error. A bad
// expression is returned at once.
func (r *Runner) Run(ctx context.Context, job Job) error {
	s, err := Parse(job.Cron)
	if err != nil {
		return fmt.Errorf("schedule %s: %w", job.Name, err)
	}
	clock := r.Clock
	if clock == nil {
		clock = RealClock{}
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("job", job.Name, "cron", job.Cron)
	var last time.Time
	for {
		from := clock.Now()
		if from.Before(last) {
			from = last
		}
		slot := s.Next(from)
		if err := clock.SleepUntil(ctx, slot); err != nil {
			return err
		}
		last = slot
		if r.Eligible != nil && !r.Eligible(ctx) {
			log.Debug("not eligible for slot", "slot", slot)
			continue
		}
		err := ClaimSlot(ctx, r.Client, r.Prefix, job.Name, slot, r.Owner, clock.Now(), r.ClaimTTL)
		switch {
		case errors.Is(err, ErrClaimed):
			log.Debug("slot taken by another agent", "slot", slot, "err", err)
			continue
		case err != nil:
			// Unknown outcome (etcd unreachable): do not run, since
			// another agent may have the claim; the next slot retries.
			log.Warn("cannot claim slot; skipping it", "slot", slot, "err", err)
			continue
		}
		log.Info("running scheduled job", "slot", slot)
		if err := job.Run(ctx, slot); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Error("scheduled job failed", "slot", slot, "err", err)
		}
	}
}
