package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/failover"
	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/store"
)

func newFailoverCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Move the registry to the other site: plan, approve, execute, resume",
		Long: `Moves the registry between sites in three commands run by two people:

  regdr failover plan --to osaka [--mode switchover|disaster]   (operator A)
  regdr failover approve PLAN --key ~/.ssh/id_ed25519           (operator B)
  regdr failover execute PLAN --key ~/.ssh/id_ed25519           (operator A)

The plan runs the preflight and binds its facts (lag, serials) under a
hash; B signs that hash; A executes. Every step is journalled in etcd, so
an interrupted execution continues with "regdr failover resume PLAN".`,
		RunE: groupRun,
	}
	cmd.AddCommand(newFailoverPlanCmd(g), newFailoverApproveCmd(g), newFailoverExecuteCmd(g, false),
		newFailoverExecuteCmd(g, true), newFailoverShowCmd(g))
	return cmd
}

func newFailoverPlanCmd(g *globals) *cobra.Command {
	var to, mode, operator string
	cmd := &cobra.Command{
		Use:   "plan --to SITE [--mode switchover|disaster]",
		Short: "Run the preflight and store a plan for a second operator to approve",
		Long: `Runs the preflight and prints a plan with an id and a hash. Each check says
pass, fail or unknown, and why:

  target-agent   the target's agent is alive, standby, its database a standby
  source-agent   the active site's agent and database answer (switchover)
  database-lag   the target's replay lag as the primary measures it
  zone ORIGIN    the target holds a gated version at least at the last
                 published serial
  keys ORIGIN    the target holds and proved the DNSSEC private keys
  backup         age of the last verified backup restore (advisory: shown,
                 never blocks; the failover is how you avoid needing it)
  freeze         no freeze held by anyone else; no other operation running

A plan with a failing check is stored but cannot be executed (a disaster
plan tolerates the source's checks failing). Plans expire after
failover.plan_ttl (default 15m).

Exit codes: 0 plan ready, 1 plan blocked by a check, 2 usage, 3 etcd
unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageErr(errors.New("--to SITE is required"))
			}
			if mode != failover.Switchover && mode != failover.Disaster {
				return usageErr(fmt.Errorf("--mode %q: want switchover or disaster", mode))
			}
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			pf := &failover.Preflight{Cfg: cfg, Etcd: cli, Keys: keysFacts{cfg: cfg, cli: cli, keys: store.Keys{Prefix: cfg.Etcd.Prefix}},
				Backups: backupFacts{cat: backup.NewCatalog(cli, cfg.Etcd.Prefix)}}
			p, err := pf.Plan(ctx, to, mode, operatorName(operator))
			if err != nil {
				return err
			}
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			if err := failover.SavePlan(ctx, cli, keys, p); err != nil {
				return withCode(3, err)
			}
			_, _ = audit.New(cli, keys).Append(ctx, audit.Entry{Who: p.RequestedBy, Action: "failover.plan", Target: p.ID,
				Result: map[bool]string{true: "ready", false: "blocked"}[p.OK()],
				Detail: map[string]string{"from": p.From, "to": p.To, "mode": p.Mode, "hash": p.Hash}})
			if g.json() {
				if err := writeJSON(cmd.OutOrStdout(), p); err != nil {
					return err
				}
			} else {
				printPlan(cmd.OutOrStdout(), p)
			}
			if !p.OK() {
				return fmt.Errorf("plan %s is blocked by: %s", p.ID, strings.Join(p.Failed(), "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the site to make active")
	cmd.Flags().StringVar(&mode, "mode", failover.Switchover, "switchover (both sites up, nothing lost) or disaster (the active site is gone)")
	cmd.Flags().StringVar(&operator, "operator", "", "who requests (default $REGDR_OPERATOR or the OS user)")
	return cmd
}

func printPlan(w io.Writer, p *failover.Plan) {
	fmt.Fprintf(w, "plan %s: %s %s → %s (epoch %d), requested by %s, expires %s\nhash %s\n\n",
		p.ID, p.Mode, p.From, p.To, p.Epoch, p.RequestedBy, p.Expires.Format(time.RFC3339), p.Hash)
	for _, c := range p.Checks {
		detail := c.Detail
		if c.Advisory && c.Status != failover.Pass {
			detail += " (advisory: does not block)"
		}
		fmt.Fprintf(w, "  %-8s %-22s %s\n", strings.ToUpper(c.Status), c.Name, detail)
	}
	if p.OK() {
		fmt.Fprintf(w, "\nnext: another operator runs  regdr failover approve %s --key KEY\n", p.ID)
	}
}

func loadPlan(ctx context.Context, g *globals, id string) (*failover.Operation, func(), error) {
	cfg, cli, err := g.connect()
	if err != nil {
		return nil, nil, err
	}
	op, _, err := failover.Load(ctx, cli, store.Keys{Prefix: cfg.Etcd.Prefix}, id)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return op, func() { cli.Close() }, nil
}

func newFailoverApproveCmd(g *globals) *cobra.Command {
	var sf signFlags
	cmd := &cobra.Command{
		Use:   "approve PLAN (--key FILE | --signature FILE | --print-message)",
		Short: "Approve a plan as the second operator, with your SSH key",
		Long: `Signs the plan's id, hash, requester and expiry with your SSH key. The
signature is checked against your key in the config; the requester cannot
approve their own plan, and whoever approves cannot execute it. Refusals are
audited too.

Exit codes: 0 approved, 1 refused, 2 usage, 3 etcd unreachable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			op, _, err := failover.Load(ctx, cli, keys, args[0])
			if err != nil {
				return err
			}
			p := &op.Plan
			if !sf.printMessage {
				printPlan(cmd.ErrOrStderr(), p)
			}
			if !p.OK() {
				return fmt.Errorf("plan %s is blocked by: %s; plan again once fixed", p.ID, strings.Join(p.Failed(), "; "))
			}
			a, done, err := sf.approval(cmd, p.Subject())
			if err != nil || done {
				return err
			}
			if err := approval.Approve(ctx, cli, keys, audit.New(cli, keys), p.Subject(), a, cfg.Operators); err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"plan": p.ID, "approved_by": a.Operator})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "plan %s approved by %s; %s may now run: regdr failover execute %s --key KEY\n", p.ID, a.Operator, p.RequestedBy, p.ID)
			return nil
		},
	}
	sf.add(cmd)
	return cmd
}

func newFailoverExecuteCmd(g *globals, resume bool) *cobra.Command {
	var sf signFlags
	var accept bool
	var wait time.Duration
	use, short := "execute PLAN (--key FILE | --signature FILE)", "Execute an approved plan, step by step, journalled in etcd"
	if resume {
		use, short = "resume PLAN (--key FILE | --signature FILE)", "Continue an interrupted operation from its journal"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

Steps (each idempotent, journalled in etcd before and after it runs):
  hooks-before-freeze  operator hooks (failover.hooks.before_freeze)
  freeze               zone publication frozen at every site
  fence-source         the old primary refuses writes (switchover); in a
                       disaster it is fenced if it answers, else it fences
                       itself when its lease lapses
  catch-up             switchover: the target replays the fenced primary's
                       last flushed LSN (zero acknowledged writes lost);
                       disaster: the loss window is recorded
  promote              the target's database is promoted
  epoch                the active-site record moves by compare-and-swap
  hooks-after-promote  operator hooks (move EPP endpoints, page people)
  publish              the new site publishes above the last published serial
  verify               every secondary serves it, sampled delegations match,
                       DNSSEC validates, the registry accepts a write
  hooks-after-verify   operator hooks
  unfreeze             zone publication resumes

The executor proves who they are by signing the plan; they must not be one
of its approvers. A disaster plan needs --accept-data-loss.

Exit codes: 0 done, 1 refused or failed (the journal says where), 2 usage,
3 etcd unreachable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx := cmd.Context()
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			op, _, err := failover.Load(lctx, cli, keys, args[0])
			cancel()
			if err != nil {
				return err
			}
			p := &op.Plan
			if !resume && op.State != failover.StatePlanned {
				return fmt.Errorf("operation %s is %s: use regdr failover resume %s", p.ID, op.State, p.ID)
			}
			if resume && op.State == failover.StatePlanned {
				return fmt.Errorf("operation %s never started: use regdr failover execute %s", p.ID, p.ID)
			}
			if !p.OK() {
				return fmt.Errorf("plan %s is blocked by: %s", p.ID, strings.Join(p.Failed(), "; "))
			}
			a, done, err := sf.approval(cmd, p.Subject())
			if err != nil || done {
				return err
			}
			now := time.Now()
			// A resumed operation already passed the gate when it started;
			// its plan may have expired since.
			if op.State == failover.StatePlanned {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				v, err := failover.Authorize(actx, cli, keys, cfg, p, a, now)
				cancel()
				if err != nil {
					_, _ = audit.New(cli, keys).Append(context.WithoutCancel(ctx), audit.Entry{Who: a.Operator, Action: "failover.execute",
						Target: p.ID, Result: "refused: " + err.Error()})
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "plan %s approved by %s; executing as %s\n", p.ID, strings.Join(v.Approvers, ", "), a.Operator)
			} else {
				if _, err := failover.Authorize(ctx, cli, keys, cfg, p, a, p.Created); err != nil {
					return err
				}
			}
			ex := &failover.Executor{Cfg: cfg, Etcd: cli, DB: failover.SQLDatabase{Cfg: cfg},
				Verifier: failover.DNSVerifier{Cfg: cfg, Site: p.To}, Operator: a.Operator,
				Progress: cmd.ErrOrStderr(), AcceptDataLoss: accept, Wait: wait}
			if crash := os.Getenv("REGDR_TEST_CRASH_AFTER"); crash != "" {
				ex.AfterStep = func(step string) {
					if step == crash {
						os.Exit(9)
					}
				}
			}
			op, err = ex.Run(ctx, p.ID)
			if op != nil {
				if g.json() {
					_ = writeJSON(cmd.OutOrStdout(), op)
				} else {
					printOperation(cmd.OutOrStdout(), op)
				}
			}
			return err
		},
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&accept, "accept-data-loss", false, "required for a disaster failover: acknowledged writes not yet replicated are lost (and salvaged at rejoin)")
	cmd.Flags().DurationVar(&wait, "step-timeout", 60*time.Second, "how long one waiting step may take")
	return cmd
}

func printOperation(w io.Writer, op *failover.Operation) {
	p := &op.Plan
	fmt.Fprintf(w, "operation %s: %s %s → %s: %s\n", p.ID, p.Mode, p.From, p.To, op.State)
	for _, s := range op.Steps {
		fmt.Fprintf(w, "  %-20s %-8s %8s  %s\n", s.Name, s.Status, s.Duration().Round(time.Millisecond), s.Detail)
	}
	if op.RTO > 0 {
		fmt.Fprintf(w, "RTO (execute → verified from outside): %s\n", op.RTO.Round(time.Millisecond))
	}
	if op.Error != "" {
		fmt.Fprintf(w, "error: %s\n", op.Error)
	}
}

func newFailoverShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show PLAN",
		Short: "Show a plan and its journal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			op, done, err := loadPlan(ctx, g, args[0])
			if err != nil {
				return err
			}
			defer done()
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), op)
			}
			printPlan(cmd.OutOrStdout(), &op.Plan)
			fmt.Fprintln(cmd.OutOrStdout())
			printOperation(cmd.OutOrStdout(), op)
			return nil
		},
	}
}
