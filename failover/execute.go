package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/zone"
)

// Database is what the executor asks of the sites' registry databases.
// Every method is idempotent: a resumed operation calls it again.
type Database interface {
	// Fence makes site's database refuse writes from every session.
	Fence(ctx context.Context, site string) error
	// Unfence lifts a fence (the new primary must accept writes).
	Unfence(ctx context.Context, site string) error
	// FlushLSN is the primary's WAL flush position after fencing: every
	// acknowledged commit is at or before it.
	FlushLSN(ctx context.Context, site string) (string, error)
	// WaitReplayed waits until site's standby replayed lsn.
	WaitReplayed(ctx context.Context, site, lsn string) error
	// ReplayLSN is a standby's replay position.
	ReplayLSN(ctx context.Context, site string) (string, error)
	// Promote makes site's standby the primary (no-op when it is one).
	Promote(ctx context.Context, site string) (timeline uint32, err error)
	// Write makes one registry write at site, proving it accepts writes.
	Write(ctx context.Context, site string) error
}

// Verifier checks the new active site from outside.
type Verifier interface {
	// Verify checks that every public secondary serves serial (or newer)
	// of origin, sampled delegations match the target's version, and
	// DNSSEC validates; it returns what it checked.
	Verify(ctx context.Context, origin string, serial uint32) (string, error)
}

// Executor runs an approved plan's steps.
type Executor struct {
	Cfg      *config.Config
	Etcd     *clientv3.Client
	DB       Database
	Verifier Verifier
	// Operator executing (authenticated by the caller).
	Operator string
	// Progress receives one line per step; nil discards.
	Progress io.Writer
	// AfterStep runs after each step is journalled done (tests crash the
	// executor here).
	AfterStep func(step string)
	// AcceptDataLoss must be set for a disaster failover.
	AcceptDataLoss bool
	// Wait bounds each waiting step.
	Wait time.Duration
}

// Step names, in order.
const (
	StepHooksBeforeFreeze = "hooks-before-freeze"
	StepFreeze            = "freeze"
	StepFenceSource       = "fence-source"
	StepCatchUp           = "catch-up"
	StepPromote           = "promote"
	StepEpoch             = "epoch"
	StepHooksAfterPromote = "hooks-after-promote"
	StepPublish           = "publish"
	StepVerify            = "verify"
	StepHooksAfterVerify  = "hooks-after-verify"
	StepUnfreeze          = "unfreeze"
)

// Steps lists an operation's steps in order.
var Steps = []string{StepHooksBeforeFreeze, StepFreeze, StepFenceSource, StepCatchUp, StepPromote, StepEpoch,
	StepHooksAfterPromote, StepPublish, StepVerify, StepHooksAfterVerify, StepUnfreeze}

// ErrNotApproved is returned when the plan's approvals do not hold.
var ErrNotApproved = errors.New("plan not approved")

// Run executes (or resumes) the operation id. The caller has checked the
// approvals (Authorize).
func (e *Executor) Run(ctx context.Context, id string) (*Operation, error) {
	keys := store.Keys{Prefix: e.Cfg.Etcd.Prefix}
	if e.Wait == 0 {
		e.Wait = 60 * time.Second
	}
	op, rev, err := Load(ctx, e.Etcd, keys, id)
	if err != nil {
		return nil, err
	}
	switch op.State {
	case StateDone:
		return op, fmt.Errorf("operation %s already finished at %s", id, op.Finished.Format(time.RFC3339))
	case StatePlanned:
		if op.Plan.Mode == Disaster && !e.AcceptDataLoss {
			return op, fmt.Errorf("a disaster failover may lose acknowledged writes (the target's newest heartbeat was %.1f s old at plan time): run again with --accept-data-loss", op.Plan.Facts.HeartbeatAgeSeconds)
		}
		op.State, op.Executor, op.Started = StateRunning, e.Operator, time.Now().UTC()
		op.Error = ""
	case StateFailed, StateRunning:
		// Resume: the journal says where it stopped.
		op.State, op.Error = StateRunning, ""
		if op.Executor == "" {
			op.Executor = e.Operator
		}
	}
	if rev, err = e.save(ctx, keys, op, rev); err != nil {
		return op, err
	}
	e.audit(ctx, keys, op, "failover.execute", "started")
	for _, name := range Steps {
		if s, ok := op.Step(name); ok && (s.Status == StepDone || s.Status == StepSkipped) {
			continue
		}
		rec := StepRecord{Name: name, Status: StepRunning, Started: time.Now().UTC()}
		op.setStep(rec)
		if rev, err = e.save(ctx, keys, op, rev); err != nil {
			return op, err
		}
		e.progress("%-20s ...", name)
		detail, skipped, serr := e.step(ctx, keys, op, name)
		rec.Finished, rec.Detail = time.Now().UTC(), detail
		switch {
		case serr != nil:
			rec.Status, rec.Detail = StepFailed, serr.Error()
			op.State, op.Error = StateFailed, fmt.Sprintf("step %s: %v", name, serr)
		case skipped:
			rec.Status = StepSkipped
		default:
			rec.Status = StepDone
		}
		op.setStep(rec)
		if name == StepVerify && serr == nil {
			op.RTO = rec.Finished.Sub(op.Started)
		}
		if rev, err = e.save(ctx, keys, op, rev); err != nil {
			return op, err
		}
		e.progress("%-20s %s %s (%s)", name, rec.Status, rec.Detail, rec.Duration().Round(time.Millisecond))
		if serr != nil {
			e.audit(ctx, keys, op, "failover.execute", "failed: "+op.Error)
			return op, fmt.Errorf("operation %s: %s; fix the cause, then: regdr failover resume %s", id, op.Error, id)
		}
		if e.AfterStep != nil {
			e.AfterStep(name)
		}
	}
	op.State, op.Finished = StateDone, time.Now().UTC()
	if _, err = e.save(ctx, keys, op, rev); err != nil {
		return op, err
	}
	e.audit(ctx, keys, op, "failover.execute", "ok")
	return op, nil
}

func (e *Executor) save(ctx context.Context, keys store.Keys, op *Operation, rev int64) (int64, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := store.UpdateJSON(sctx, e.Etcd, keys.Operation(op.Plan.ID), op, rev); err != nil {
		return rev, fmt.Errorf("journal operation %s: %w (another executor may be running it)", op.Plan.ID, err)
	}
	_, rev, err := Load(sctx, e.Etcd, keys, op.Plan.ID)
	return rev, err
}

func (e *Executor) progress(format string, args ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, format+"\n", args...)
	}
}

func (e *Executor) audit(ctx context.Context, keys store.Keys, op *Operation, action, result string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = audit.New(e.Etcd, keys).Append(actx, audit.Entry{Who: e.Operator, Action: action, Target: op.Plan.ID, Result: result,
		Detail: map[string]string{"from": op.Plan.From, "to": op.Plan.To, "mode": op.Plan.Mode, "hash": op.Plan.Hash}})
}

// freezeBy names the operation in the freeze it holds.
func freezeBy(id string) string { return "operation " + id }

func (e *Executor) step(ctx context.Context, keys store.Keys, op *Operation, name string) (detail string, skipped bool, err error) {
	p := &op.Plan
	wctx, cancel := context.WithTimeout(ctx, e.Wait)
	defer cancel()
	fo := e.Cfg.FailoverOrDefault()
	switch name {
	case StepHooksBeforeFreeze:
		return e.hooks(wctx, op, "before_freeze", fo.Hooks.BeforeFreeze)
	case StepFreeze:
		f := store.Freeze{Reason: fmt.Sprintf("%s %s→%s", p.Mode, p.From, p.To), By: freezeBy(p.ID), Since: time.Now().UTC()}
		err := store.CreateJSON(wctx, e.Etcd, keys.Freeze(""), f)
		if errors.Is(err, store.ErrExists) {
			cur, found, gerr := store.FreezeFor(wctx, e.Etcd, keys, "")
			if gerr == nil && found && cur.By == f.By {
				return "already frozen by this operation", false, nil
			}
			return "", false, fmt.Errorf("publication is frozen by %s (%s): not ours to override", cur.By, cur.Reason)
		}
		if err != nil {
			return "", false, err
		}
		return "zone publication frozen at every site", false, nil
	case StepFenceSource:
		if p.Mode == Disaster {
			fctx, c := context.WithTimeout(wctx, 3*time.Second)
			defer c()
			if err := e.DB.Fence(fctx, p.From); err != nil {
				return fmt.Sprintf("%s unreachable (%v): it fences itself when its lease lapses", p.From, err), true, nil
			}
			return p.From + " database fenced (it answered)", false, nil
		}
		if err := e.DB.Fence(wctx, p.From); err != nil {
			return "", false, err
		}
		return p.From + " database refuses writes; client sessions terminated", false, nil
	case StepCatchUp:
		if p.Mode == Disaster {
			lsn, _ := e.DB.ReplayLSN(wctx, p.To)
			op.Lost = &LossWindow{HeartbeatAgeSeconds: p.Facts.HeartbeatAgeSeconds, LastLagBytes: p.Facts.LagBytes, ReplayLSN: lsn}
			return fmt.Sprintf("disaster: %s replayed to %s; the loss window is up to %.1f s of writes (salvaged at rejoin)", p.To, lsn, p.Facts.HeartbeatAgeSeconds), false, nil
		}
		lsn, err := e.DB.FlushLSN(wctx, p.From)
		if err != nil {
			return "", false, err
		}
		if err := e.DB.WaitReplayed(wctx, p.To, lsn); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%s replayed %s's last flushed LSN %s: no acknowledged write is lost", p.To, p.From, lsn), false, nil
	case StepPromote:
		tl, err := e.DB.Promote(wctx, p.To)
		if err != nil {
			return "", false, err
		}
		if err := e.DB.Unfence(wctx, p.To); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%s promoted, timeline %d", p.To, tl), false, nil
	case StepEpoch:
		cur, _, err := store.GetActive(wctx, e.Etcd, keys)
		if err != nil {
			return "", false, err
		}
		if cur.Site == p.To && cur.Operation == p.ID {
			return fmt.Sprintf("already %s at epoch %d", p.To, cur.Epoch), false, nil
		}
		a, err := store.CASActive(wctx, e.Etcd, keys, p.Epoch, p.To, p.ID, time.Now())
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("active site %s at epoch %d", a.Site, a.Epoch), false, nil
	case StepHooksAfterPromote:
		return e.hooks(wctx, op, "after_promote", fo.Hooks.AfterPromote)
	case StepPublish:
		var got []string
		for origin, last := range p.Facts.Published {
			var pv store.PublishedVersion
			err := poll(wctx, 50*time.Millisecond, func() error {
				v, found, err := store.LastPublished(wctx, e.Etcd, keys, origin)
				if err != nil {
					return err
				}
				if !found || v.Site != p.To || !zone.SerialLess(last, v.Serial) {
					return fmt.Errorf("%s last published serial %d by %s, waiting for %s to publish above %d", origin, v.Serial, v.Site, p.To, last)
				}
				pv = v
				return nil
			})
			if err != nil {
				return "", false, err
			}
			got = append(got, fmt.Sprintf("%s serial %d (was %d)", origin, pv.Serial, last))
		}
		return p.To + " published " + strings.Join(got, ", "), false, nil
	case StepVerify:
		var out []string
		for origin := range p.Facts.Published {
			v, _, err := store.LastPublished(wctx, e.Etcd, keys, origin)
			if err != nil {
				return "", false, err
			}
			d, err := e.Verifier.Verify(wctx, origin, v.Serial)
			if err != nil {
				return "", false, err
			}
			out = append(out, d)
		}
		if err := e.DB.Write(wctx, p.To); err != nil {
			return "", false, fmt.Errorf("the registry at %s does not accept a write: %w", p.To, err)
		}
		out = append(out, "registry at "+p.To+" accepted a write")
		return strings.Join(out, "; "), false, nil
	case StepHooksAfterVerify:
		return e.hooks(wctx, op, "after_verify", fo.Hooks.AfterVerify)
	case StepUnfreeze:
		cur, found, err := store.FreezeFor(wctx, e.Etcd, keys, "")
		if err != nil {
			return "", false, err
		}
		if !found {
			return "not frozen", false, nil
		}
		if cur.By != freezeBy(p.ID) {
			return fmt.Sprintf("the freeze is %s's, left in place", cur.By), false, nil
		}
		if _, err := store.DeleteFreeze(wctx, e.Etcd, keys, ""); err != nil {
			return "", false, err
		}
		return "zone publication resumed", false, nil
	}
	return "", false, fmt.Errorf("unknown step %q", name)
}

// hooks runs the operator's commands for a point, with the operation's
// facts in the environment.
func (e *Executor) hooks(ctx context.Context, op *Operation, point string, cmds [][]string) (string, bool, error) {
	if len(cmds) == 0 {
		return "no " + point + " hooks", true, nil
	}
	env := append(os.Environ(),
		"REGDR_OPERATION="+op.Plan.ID, "REGDR_FROM="+op.Plan.From, "REGDR_TO="+op.Plan.To,
		"REGDR_MODE="+op.Plan.Mode, "REGDR_HOOK="+point, "REGDR_EPOCH="+strconv.FormatUint(op.Plan.Epoch, 10),
		"REGDR_CONFIG="+e.Cfg.Path())
	var ran []string
	for _, argv := range cmds {
		c := exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			return "", false, fmt.Errorf("%s hook %q: %w: %s", point, strings.Join(argv, " "), err, lastLine(out))
		}
		ran = append(ran, argv[0])
	}
	return "ran " + strings.Join(ran, ", "), false, nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// poll retries f every interval until it succeeds or ctx ends, returning
// f's last error with the deadline.
func poll(ctx context.Context, interval time.Duration, f func() error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
	}
}
