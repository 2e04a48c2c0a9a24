package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/drills/report"
	"github.com/regdr/regdr/drills/runner"
	"github.com/regdr/regdr/drills/scenario"
	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/store"
)

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Scripted disaster-recovery drills: validate, run, history",
		Long: `A drill is a YAML scenario (see drills/scenarios/) that applies faults and
regdr operations to a lab in order, watches the service with probes
throughout, halts and rolls back when a probe stays out of tolerance, always
restores and re-verifies the steady state, and reports RTO, RPO, DNS
availability, serial continuity and DNSSEC validity as JSON, Markdown and a
self-contained HTML page with a timeline.`,
		RunE: groupRun,
	}
	cmd.AddCommand(newDrillValidateCmd(g), newDrillRunCmd(g), newDrillHistoryCmd(g), newDrillRequestCmd(g), newDrillApproveCmd(g))
	return cmd
}

func newDrillValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check scenario files; every problem is reported with file:line:col",
		Long: `Checks each scenario file: YAML syntax, unknown or repeated fields, the
vocabulary of actions, conditions and probes, arguments, references between
steps (measure.rto.from, captured variables) and expectations that need a
measurement.

Exit codes: 0 every file is valid, 1 a file has problems, 2 usage.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			type result struct {
				File     string   `json:"file"`
				Valid    bool     `json:"valid"`
				Name     string   `json:"name,omitempty"`
				Steps    int      `json:"steps,omitempty"`
				Problems []string `json:"problems,omitempty"`
			}
			var out []result
			bad := 0
			for _, f := range args {
				s, err := scenario.Load(f)
				r := result{File: f, Valid: err == nil}
				var ps scenario.Problems
				switch {
				case err == nil:
					r.Name, r.Steps = s.Name, len(s.Steps)
				case errors.As(err, &ps):
					for _, p := range ps {
						r.Problems = append(r.Problems, p.Error())
					}
				default:
					r.Problems = []string{err.Error()}
				}
				if !r.Valid {
					bad++
				}
				out = append(out, r)
			}
			w := cmd.OutOrStdout()
			if g.json() {
				if err := writeJSON(w, out); err != nil {
					return err
				}
			} else {
				for _, r := range out {
					if r.Valid {
						fmt.Fprintf(w, "%s: ok (%s, %d steps)\n", r.File, r.Name, r.Steps)
						continue
					}
					for _, p := range r.Problems {
						fmt.Fprintln(w, p)
					}
				}
			}
			if bad > 0 {
				return withCode(exitFailed, fmt.Errorf("%d of %d scenario file(s) invalid", bad, len(args)))
			}
			return nil
		},
	}
}

func newDrillRunCmd(g *globals) *cobra.Command {
	var labDir, reportDir, operator string
	var production, yes, noHistory bool
	cmd := &cobra.Command{
		Use:   "run FILE [--lab-dir D] [--report-dir R]",
		Short: "Run a drill scenario against a lab and write its reports",
		Long: `Runs the scenario against the lab in --lab-dir: steady-state preconditions,
probes throughout, the steps, the rollback (always), the steady state again.
Writes <report-dir>/<scenario>-<start>.{json,md,html} and records a summary in
etcd (<prefix>/drills/<name>/<start>) for 'regdr drill history'.

A confirm step asks on the terminal; with --yes, or without a terminal, it is
confirmed automatically and the report says so.

Scenarios marked target.production: true are refused unless --production is
given, and --production needs a two-person approval of that exact file: the
runner requests it (regdr drill request FILE), another operator approves it
(regdr drill approve NAME --key KEY), then the requester runs it before the
request expires. This build drives labs only; --lab-dir names the target.

Exit codes: 0 passed, 1 failed, aborted or could not start, 2 usage.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenario.Load(args[0])
			if err != nil {
				return withCode(exitFailed, err)
			}
			if s.Target.Production && !production {
				return withCode(exitFailed, fmt.Errorf("drill %s targets production: it needs --production and a two-person approval (regdr drill request, then another operator's regdr drill approve): %w", s.Name, runner.ErrProduction))
			}
			l, err := lab.Open(labDir)
			if err != nil {
				return withCode(exitFailed, err)
			}
			target := "lab " + l.State.Dir
			if production {
				approvers, err := drillProductionCheck(cmd, l, s.Name, args[0], operatorName(operator))
				if err != nil {
					return withCode(exitFailed, err)
				}
				target += " (production scenario, requested by " + operatorName(operator) + ", approved by " + strings.Join(approvers, ", ") + ")"
			}
			if reportDir == "" {
				reportDir = filepath.Join(l.State.Dir, "drills")
			}
			log := g.logger(cmd.ErrOrStderr())
			env, err := runner.NewLabEnv(l, filepath.Join(reportDir, "work"), log)
			if err != nil {
				return withCode(exitFailed, err)
			}
			defer env.Close()
			opts := runner.Options{Faults: env, Observer: env, Commander: env, Loader: env, Target: target, Production: production, Log: log}
			if !yes && drillIsTerminal(os.Stdin) {
				opts.Confirm = func(ctx context.Context, prompt string) (bool, error) {
					return drillAskYes(ctx, cmd.InOrStdin(), cmd.ErrOrStderr(), prompt)
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "drill %s: running against the lab in %s\n", s.Name, l.State.Dir)
			r, err := runner.Run(cmd.Context(), s, opts)
			if err != nil {
				return withCode(exitFailed, err)
			}
			files, err := report.Write(r, reportDir)
			if err != nil {
				return err
			}
			if !noHistory {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 10*time.Second)
				err := report.Record(ctx, env.Etcd(), l.Cfg.Etcd.Prefix, report.Summary(r, files.HTML, operatorName(operator)))
				cancel()
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: drill history not recorded: %v\n", err)
				}
			}
			w := cmd.OutOrStdout()
			if g.json() {
				if err := writeJSON(w, map[string]any{"report": r, "files": files}); err != nil {
					return err
				}
			} else {
				drillPrintSummary(w, r, files)
			}
			if r.Outcome != report.Passed {
				return withCode(exitFailed, fmt.Errorf("drill %s %s", r.Scenario, r.Outcome))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&labDir, "lab-dir", defaultLabDir(), "the lab to run against (env REGDR_LAB_DIR)")
	cmd.Flags().StringVar(&reportDir, "report-dir", "", "where to write the reports (default <lab-dir>/drills)")
	cmd.Flags().BoolVar(&production, "production", false, "allow a scenario marked target.production (needs a two-person approval)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm every confirm step automatically")
	cmd.Flags().BoolVar(&noHistory, "no-history", false, "do not record the run in etcd")
	cmd.Flags().StringVar(&operator, "operator", "", "who runs the drill (default $REGDR_OPERATOR or the OS user)")
	return cmd
}

func drillPrintSummary(w io.Writer, r *report.Report, f report.Files) {
	fmt.Fprintf(w, "drill %s: %s in %s\n", r.Scenario, strings.ToUpper(r.Outcome), r.Duration().Round(time.Millisecond))
	if r.AbortReason != "" {
		fmt.Fprintf(w, "  aborted: %s\n", r.AbortReason)
	}
	for _, why := range r.Reasons {
		fmt.Fprintf(w, "  %s\n", why)
	}
	for _, m := range report.MetricRows(r) {
		fmt.Fprintf(w, "  %-18s %s\n", m[0]+":", m[1])
	}
	for _, e := range r.Expect {
		mark := "ok  "
		if !e.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s expect %s = %s (got %s)\n", mark, e.Name, e.Want, e.Got)
	}
	fmt.Fprintf(w, "reports:\n  %s\n  %s\n  %s\n", f.HTML, f.Markdown, f.JSON)
}

func drillIsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// drillAskYes asks on the terminal; anything but y/yes declines.
func drillAskYes(ctx context.Context, in io.Reader, out io.Writer, prompt string) (bool, error) {
	fmt.Fprintf(out, "%s [y/N] ", prompt)
	ans := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(in).ReadString('\n')
		ans <- strings.ToLower(strings.TrimSpace(line))
	}()
	select {
	case <-ctx.Done():
		return false, fmt.Errorf("no answer to %q: %w", prompt, ctx.Err())
	case a := <-ans:
		return a == "y" || a == "yes", nil
	}
}

func newDrillHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history [NAME]",
		Short: "Past drills from etcd with the RTO and RPO trend",
		Long: `Lists the drills recorded in etcd, oldest first per scenario. The trend
columns compare each run with the previous run of the same scenario:
▲ the value rose (worse for RTO and RPO), ▼ it fell, = unchanged.

Exit codes: 0 listed, 2 usage, 3 etcd unreachable.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			hist, err := report.History(ctx, cli, cfg.Etcd.Prefix, name)
			if err != nil {
				return withCode(exitNoAccess, err)
			}
			if g.json() {
				if hist == nil {
					hist = []report.Entry{}
				}
				return writeJSON(cmd.OutOrStdout(), hist)
			}
			if len(hist) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no drills recorded")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCENARIO\tSTARTED\tOUTCOME\tRTO\tTREND\tRPO WRITES\tRPO S\tTREND\tDNS AVAIL\tREPORT")
			prev := map[string]report.Entry{}
			for _, e := range hist {
				p, seen := prev[e.Scenario]
				var rtoTrend, rpoTrend string
				if seen {
					rtoTrend = report.Trend(p.RTOSeconds, e.RTOSeconds)
					rpoTrend = report.Trend(drillIntf(p.RPOWrites), drillIntf(e.RPOWrites))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Scenario, e.Started.Format(time.RFC3339), e.Outcome,
					drillSec(e.RTOSeconds), drillDash(rtoTrend), drillInt(e.RPOWrites), drillSec(e.RPOSeconds), drillDash(rpoTrend), drillPct(e.DNSAvailability), e.Report)
				prev[e.Scenario] = e
			}
			return tw.Flush()
		},
	}
}

func drillIntf(p *int) *float64 {
	if p == nil {
		return nil
	}
	f := float64(*p)
	return &f
}

func drillSec(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fs", *p)
}

func drillInt(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func drillPct(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", *p)
}

func drillDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// drillProductionCheck checks the two-person approval of a production
// drill in the target's etcd and returns the approvers.
func drillProductionCheck(cmd *cobra.Command, l *lab.Lab, name, file, runnerName string) ([]string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	v, err := runner.CheckApproved(ctx, cli, store.Keys{Prefix: l.Cfg.Etcd.Prefix}, name, raw, runnerName, l.Cfg.Operators, time.Now())
	if err != nil {
		return nil, err
	}
	return v.Approvers, nil
}

func newDrillRequestCmd(g *globals) *cobra.Command {
	var operator string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "request FILE",
		Short: "Ask a second operator to approve a production drill",
		Long: `Stores a request to run the production scenario FILE (its SHA-256, you as
the requester, an expiry) for another operator to approve with
'regdr drill approve NAME'. Only you may then run it, with --production,
before the request expires; editing the file voids the approval.

Exit codes: 0 requested, 1 refused, 2 usage, 3 etcd unreachable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenario.Load(args[0])
			if err != nil {
				return withCode(exitFailed, err)
			}
			if !s.Target.Production {
				return withCode(exitFailed, fmt.Errorf("drill %s is a lab drill (target.production is not set): it needs no approval", s.Name))
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			who := operatorName(operator)
			req := runner.NewRequest(s.Name, raw, who, time.Now(), ttl)
			if err := runner.PutRequest(ctx, cli, keys, req); err != nil {
				return withCode(exitNoAccess, err)
			}
			if _, err := audit.New(cli, keys).Append(ctx, audit.Entry{Who: who, Action: "drill.request", Target: runner.KindDrill + "/" + s.Name,
				Result: "ok", Detail: map[string]string{"digest": req.Digest, "expires": req.Expires.Format(time.RFC3339)}}); err != nil {
				return fmt.Errorf("drill %s requested, but the audit append failed: %w", s.Name, err)
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), req)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "drill %s requested by %s (sha256 %s), expires %s\nnext: another operator runs  regdr drill approve %s --key KEY\n",
				s.Name, who, req.Digest, req.Expires.Format(time.RFC3339), s.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&operator, "operator", "", "who requests, and will run it (default $REGDR_OPERATOR or the OS user)")
	cmd.Flags().DurationVar(&ttl, "ttl", runner.DefaultRequestTTL, "how long the request (and its approval) stays valid")
	return cmd
}

func newDrillApproveCmd(g *globals) *cobra.Command {
	var sf signFlags
	cmd := &cobra.Command{
		Use:   "approve NAME (--key FILE | --signature FILE | --print-message)",
		Short: "Approve another operator's production drill request, with your SSH key",
		Long: `Signs the pending request of drill NAME (scenario digest, requester,
expiry) with your SSH key; the signature is checked against your key in the
config and the requester cannot approve their own drill. Refusals are
audited too.

Exit codes: 0 approved, 1 refused, 2 usage, 3 etcd unreachable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			req, err := runner.GetRequest(ctx, cli, keys, args[0])
			if err != nil {
				return withCode(exitFailed, err)
			}
			a, done, err := sf.approval(cmd, req)
			if err != nil || done {
				return err
			}
			if err := approval.Approve(ctx, cli, keys, audit.New(cli, keys), req, a, cfg.Operators); err != nil {
				return withCode(exitFailed, err)
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"drill": req.ID, "approved_by": a.Operator, "requester": req.Requester})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "drill %s approved by %s; %s may now run: regdr drill run FILE --production\n", req.ID, a.Operator, req.Requester)
			return nil
		},
	}
	sf.add(cmd)
	return cmd
}
