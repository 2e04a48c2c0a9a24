package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/store"

	"github.com/regdr/regdr/replicator/gates"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonepull"
	"github.com/regdr/regdr/replicator/zonestore"
)

func newZoneCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "zone",
		Short: "Zone versions and their publication safety gates",
		RunE:  groupRun,
	}
	cmd.AddCommand(newZoneCheckCmd(g))
	cmd.AddCommand(newZoneFreezeCmds(g)...)
	cmd.AddCommand(newZoneHistoryCmds(g)...)
	cmd.AddCommand(newZoneRollbackCmd(g))
	cmd.AddCommand(newZoneApproveCmd(g))
	return cmd
}

type zoneCheckFlags struct {
	origin, previous, published, at string
	previousVerified                bool
	expect                          int
	required                        []string
	cfg                             gates.Config
	minValidity                     time.Duration
}

func newZoneCheckCmd(g *globals) *cobra.Command {
	f := zoneCheckFlags{cfg: gates.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "check FILE --origin ORIGIN",
		Short: "Run every publication safety gate on a zone file (a linter for the registry's own CI)",
		Long: `Runs the gates regdr applies before it stores, serves or replicates a zone
version, on one zone file, and reports every failing record with file:line:

  origin     every name inside the origin; "doubled origin" (.se 2009)
  apex       SOA and NS at the apex, glue, no CNAME beside data, no empty delegation
  serial     newer than --previous (RFC 1982); same serial with other content refused
  budget     delegations removed/added/changed against --published (or --previous);
             an empty or apex-only zone is always refused (RIPE 2012, 2017)
  reconcile  delegation count equals --expect-delegations (.hk 2004)
  required   --required names present; RFC 2317 CNAMEs and DS of --previous kept
  dnssec     DNSKEY signed by a KSK, every RRset signed, every signature verifies,
             validity window as of --at, NSEC/NSEC3 chain complete
  zonemd     ZONEMD (RFC 8976) verified when present

A gate without what it needs (no --previous, no --expect-delegations, unsigned
zone) is reported as skipped, never as passed.

Memory: the check holds the zone packed (about 1.3 times the file) and asks
the garbage collector to keep the heap near 1.75 times the input files plus
64 MB; set GOMEMLIMIT to choose another limit (a 413 MB, 1,000,000-delegation
TLD checks in 0.8 GB).

Exit code 0 when every gate passes, 1 when the zone is blocked, 2 on bad usage
or an unreadable file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runZoneCheck(cmd, g, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.origin, "origin", "", "the zone's origin, with its trailing dot (required)")
	fl.StringVar(&f.previous, "previous", "", "the last accepted version, for the serial and required gates")
	fl.StringVar(&f.published, "published", "", "the last published version, for the change budget (default: --previous)")
	fl.BoolVar(&f.previousVerified, "previous-verified", false, "the --previous version passed the dnssec gate: verify only signatures that changed (the incremental check)")
	fl.StringVar(&f.at, "at", "", "validate signatures as of this RFC 3339 time (default: now), for archived versions")
	fl.IntVar(&f.expect, "expect-delegations", -1, "delegations the registry database holds (reconciliation); -1 skips the gate")
	fl.StringSliceVar(&f.required, "required", nil, "a name that must be present (repeatable)")
	fl.Float64Var(&f.cfg.MaxRemovedPercent, "max-removed-percent", f.cfg.MaxRemovedPercent, "most delegations one version may remove, in percent")
	fl.Float64Var(&f.cfg.MaxAddedPercent, "max-added-percent", f.cfg.MaxAddedPercent, "most delegations one version may add, in percent")
	fl.Float64Var(&f.cfg.MaxChangedPercent, "max-changed-percent", f.cfg.MaxChangedPercent, "most delegations whose NS or DS may change, in percent")
	fl.DurationVar(&f.minValidity, "min-signature-validity", f.cfg.MinSignatureValidity, "least remaining RRSIG lifetime accepted")
	return cmd
}

func runZoneCheck(cmd *cobra.Command, g *globals, f zoneCheckFlags, file string) error {
	if f.origin == "" {
		return usageErr(errors.New("--origin is required (e.g. --origin test.)"))
	}
	if !strings.HasSuffix(f.origin, ".") {
		return usageErr(fmt.Errorf("--origin %q must end with a dot", f.origin))
	}
	if _, ok := dns.IsDomainName(f.origin); !ok {
		return usageErr(fmt.Errorf("--origin %q is not a domain name", f.origin))
	}
	now := time.Now()
	if f.at != "" {
		t, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return usageErr(fmt.Errorf("--at %q: want RFC 3339, e.g. 2026-11-24T12:00:00Z", f.at))
		}
		now = t
	}
	f.cfg.RequiredNames = f.required
	f.cfg.MinSignatureValidity = f.minValidity
	if err := f.cfg.Validate(); err != nil {
		return usageErr(err)
	}
	in := &gates.Input{Now: now}
	if f.expect >= 0 {
		n := f.expect
		in.ExpectedDelegations = &n
	}
	var err error
	limitMemoryFor(fileSizes(file, f.previous, f.published))
	// A candidate that does not parse is blocked (exit 1), like any other
	// gate failure; reference versions that do not parse are bad usage.
	// The candidate and --previous parse at the same time.
	var prevErr error
	prevDone := make(chan struct{})
	go func() {
		defer close(prevDone)
		if f.previous != "" {
			in.Previous, prevErr = zone.ParseFile(f.previous, f.origin)
		}
	}()
	cand, perr := zone.ParseFile(file, f.origin)
	<-prevDone
	if perr != nil && isUnreadable(perr) {
		return usageErr(perr)
	}
	if prevErr != nil {
		return usageErr(fmt.Errorf("--previous: %w", prevErr))
	}
	in.PreviousVerified = f.previousVerified && in.Previous != nil
	if f.published != "" {
		if in.Published, err = zone.ParseFile(f.published, f.origin); err != nil {
			return usageErr(fmt.Errorf("--published: %w", err))
		}
	}
	out := cmd.OutOrStdout()
	if perr != nil {
		rep := gates.Report{Origin: f.origin, At: now, Results: []gates.Result{{
			Gate: "parse", Status: gates.StatusFail, Total: 1,
			Findings: []gates.Finding{{Gate: "parse", Kind: "syntax", File: file, Msg: perr.Error()}},
		}}}
		if err := printZoneReport(out, g, file, rep); err != nil {
			return err
		}
		return withCode(exitFailed, fmt.Errorf("%s: blocked: %v", file, perr))
	}
	in.Zone = cand
	rep := gates.Run(cmd.Context(), gates.Default(f.cfg), in)
	if err := printZoneReport(out, g, file, rep); err != nil {
		return err
	}
	if !rep.Pass {
		return withCode(exitFailed, fmt.Errorf("%s: blocked by %s", file, strings.Join(rep.Failed(), ", ")))
	}
	return nil
}

func isUnreadable(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission)
}

func printZoneReport(w io.Writer, g *globals, file string, rep gates.Report) error {
	if g.json() {
		return writeJSON(w, rep)
	}
	verdict := "PASS"
	if !rep.Pass {
		verdict = "BLOCKED"
	}
	fmt.Fprintf(w, "%s %s serial %d: %s\n", file, rep.Origin, rep.Serial, verdict)
	for _, r := range rep.Results {
		line := fmt.Sprintf("  %-4s %-9s", strings.ToUpper(r.Status), r.Gate)
		if r.Reason != "" {
			line += " " + r.Reason
		}
		if r.Took >= time.Millisecond {
			line += fmt.Sprintf(" (%s)", r.Took.Round(time.Millisecond))
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		for _, fd := range r.Findings {
			fmt.Fprintln(w, "         "+fd.String())
		}
		if r.Total > len(r.Findings) {
			fmt.Fprintf(w, "         ... and %d more\n", r.Total-len(r.Findings))
		}
	}
	return nil
}

// operatorName is who an operator command acts as, for freeze records and
// the audit log: --operator, $REGDR_OPERATOR, or the OS user.
func operatorName(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv("REGDR_OPERATOR"); v != "" {
		return v
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

func newZoneFreezeCmds(g *globals) []*cobra.Command {
	var reason, operator string
	freeze := &cobra.Command{
		Use:   "freeze [ZONE] --reason TEXT",
		Short: "Stop publishing new versions of a zone (or of every zone) at every site",
		Long: `Holds zone publication: the active site's agent keeps serving the version it
has and publishes nothing new (it notes the newest held serial) until
'regdr zone thaw'. Use it during maintenance of the registry's generator or
signer (.se 2009: distribution was not stopped during maintenance). The freeze
lives in etcd, so every agent sees it, and it is audited.

Without ZONE, every zone is frozen.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usageErr(errors.New("--reason is required: say why publication is frozen"))
			}
			z := ""
			if len(args) == 1 {
				z = dns.Fqdn(args[0])
			}
			return zoneFreezeOp(cmd, g, z, func(ctx context.Context, cli *clientv3.Client, keys store.Keys, who string) (string, error) {
				f := store.Freeze{Zone: z, Reason: reason, By: who, Since: time.Now()}
				if err := store.PutFreeze(ctx, cli, keys, f); err != nil {
					return "", err
				}
				return "frozen", nil
			}, operator, map[string]string{"reason": reason})
		},
	}
	freeze.Flags().StringVar(&reason, "reason", "", "why (recorded in etcd and the audit log)")
	freeze.Flags().StringVar(&operator, "operator", "", "who is freezing (default $REGDR_OPERATOR or the OS user)")
	var operator2 string
	thaw := &cobra.Command{
		Use:     "thaw [ZONE]",
		Aliases: []string{"unfreeze"},
		Short:   "Lift a freeze; the active site publishes the newest held version after the gates pass",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			z := ""
			if len(args) == 1 {
				z = dns.Fqdn(args[0])
			}
			return zoneFreezeOp(cmd, g, z, func(ctx context.Context, cli *clientv3.Client, keys store.Keys, who string) (string, error) {
				existed, err := store.DeleteFreeze(ctx, cli, keys, z)
				if err != nil {
					return "", err
				}
				if !existed {
					return "not-frozen", nil
				}
				return "thawed", nil
			}, operator2, nil)
		},
	}
	thaw.Flags().StringVar(&operator2, "operator", "", "who is thawing (default $REGDR_OPERATOR or the OS user)")
	return []*cobra.Command{freeze, thaw}
}

func zoneFreezeOp(cmd *cobra.Command, g *globals, z string, op func(context.Context, *clientv3.Client, store.Keys, string) (string, error), operator string, detail map[string]string) error {
	cfg, cli, err := g.dialEtcd()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	keys := store.Keys{Prefix: cfg.Etcd.Prefix}
	who := operatorName(operator)
	target := z
	if target == "" {
		target = "*"
	}
	result, err := op(ctx, cli, keys, who)
	if err != nil {
		return withCode(exitFailed, fmt.Errorf("zone %s: %w", target, err))
	}
	action := "zone." + cmd.Name()
	if _, err := audit.New(cli, keys).Append(ctx, audit.Entry{Who: who, Action: action, Target: target, Result: result, Detail: detail}); err != nil {
		return fmt.Errorf("zone %s %s, but the audit append failed: %w", target, result, err)
	}
	if g.json() {
		return writeJSON(cmd.OutOrStdout(), map[string]string{"zone": target, "result": result, "by": who})
	}
	fmt.Fprintf(cmd.OutOrStdout(), "zone %s: %s by %s\n", target, result, who)
	return nil
}

// openSiteStore opens the zone store a site's agent keeps under its
// zone_dir. It reads the site's disk, so run it on that site's machine (or
// anywhere in the lab).
func openSiteStore(g *globals, site string) (*zonestore.Store, error) {
	if site == "" {
		site = os.Getenv("REGDR_SITE")
	}
	if site == "" {
		return nil, usageErr(errors.New("--site is required (or REGDR_SITE): each site keeps its own zone store"))
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	s, ok := cfg.Site(site)
	if !ok || s.ZoneDir == "" {
		return nil, usageErr(fmt.Errorf("site %q has no zone_dir in %s", site, cfg.Path()))
	}
	dir := filepath.Join(s.ZoneDir, "store")
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("site %s zone store %s: %w (is this %s's machine?)", site, dir, err, site)
	}
	return zonestore.Open(dir)
}

func newZoneHistoryCmds(g *globals) []*cobra.Command {
	var site string
	history := &cobra.Command{
		Use:   "history ZONE --site SITE",
		Short: "Every version of a zone the site accepted, with who accepted it and when it was published",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openSiteStore(g, site)
			if err != nil {
				return err
			}
			ms, err := st.List(dns.Fqdn(args[0]))
			if err != nil {
				return err
			}
			if g.json() {
				if ms == nil {
					ms = []zonestore.Manifest{}
				}
				return writeJSON(cmd.OutOrStdout(), ms)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tACCEPTED\tBY\tSOURCE\tPUBLISHED\tRECORDS\tDELEGATIONS\tDIGEST")
			for _, m := range ms {
				pub := "-"
				if m.Published {
					pub = m.PublishedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.Serial, m.AcceptedAt.UTC().Format(time.RFC3339),
					m.AcceptedBy, m.Source, pub, m.Records, m.Delegations, m.Digest[:12])
			}
			return tw.Flush()
		},
	}
	history.Flags().StringVar(&site, "site", "", "whose store (env REGDR_SITE)")

	var dsite string
	var limit int
	diff := &cobra.Command{
		Use:   "diff ZONE SERIAL_A SERIAL_B --site SITE",
		Short: "Records added and removed between two stored versions",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var serials [2]uint32
			for i, a := range args[1:] {
				v, err := strconv.ParseUint(a, 10, 32)
				if err != nil {
					return usageErr(fmt.Errorf("serial %q: %w", a, err))
				}
				serials[i] = uint32(v)
			}
			st, err := openSiteStore(g, dsite)
			if err != nil {
				return err
			}
			origin := dns.Fqdn(args[0])
			var zs [2]*zone.Zone
			for i, s := range serials {
				m, err := st.Get(origin, s)
				if err != nil {
					return fmt.Errorf("%s serial %d: %w", origin, s, err)
				}
				if zs[i], err = st.Load(m); err != nil {
					return err
				}
			}
			ch := zonestore.Diff(zs[0], zs[1])
			if g.json() {
				text := func(rrs []dns.RR) []string {
					out := []string{}
					for _, rr := range rrs {
						out = append(out, rr.String())
					}
					return out
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{
					"zone": origin, "from": serials[0], "to": serials[1],
					"summary": ch.Summary(), "added": text(ch.Added), "removed": text(ch.Removed),
				})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s %d -> %d: %s\n", origin, serials[0], serials[1], ch.Summary())
			shown := 0
			for _, set := range []struct {
				sign string
				rrs  []dns.RR
			}{{"-", ch.Removed}, {"+", ch.Added}} {
				for _, rr := range set.rrs {
					if limit > 0 && shown >= limit {
						fmt.Fprintf(out, "... (--limit %d reached)\n", limit)
						return nil
					}
					fmt.Fprintln(out, set.sign+" "+rr.String())
					shown++
				}
			}
			return nil
		},
	}
	diff.Flags().StringVar(&dsite, "site", "", "whose store (env REGDR_SITE)")
	diff.Flags().IntVar(&limit, "limit", 200, "most records to print (0 = all)")
	return []*cobra.Command{history, diff}
}

func newZoneRollbackCmd(g *globals) *cobra.Command {
	var to uint32
	var reason, operator string
	var noFreeze bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback ZONE --to SERIAL --reason TEXT",
		Short: "Re-publish a stored good version under a new, higher serial, and verify the secondaries took it",
		Long: `The .hk fix of 2004, as one command: the active site's agent takes the stored
version SERIAL from its zone store, gives it a serial above the one served (re-
signing only the SOA with the site's zone-signing key), runs the gates again
(all but the change budget: undoing a bad change is the point) and publishes it
with NOTIFY. This command waits until the agent reports the outcome and every
public secondary answers the new serial; "ok" means verified.

Unless --no-freeze, the zone is frozen first (reason "rollback to SERIAL: ..."),
so the generator's next, possibly still broken, version is held until
'regdr zone thaw'. Everything is in the audit log.

Exit code 0 verified, 1 refused or failed, 3 etcd unreachable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == 0 {
				return usageErr(errors.New("--to SERIAL is required (see 'regdr zone history')"))
			}
			if strings.TrimSpace(reason) == "" {
				return usageErr(errors.New("--reason is required"))
			}
			origin := dns.Fqdn(args[0])
			cfg, cli, err := g.dialEtcd()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			who := operatorName(operator)
			log := audit.New(cli, keys)
			if !noFreeze {
				f := store.Freeze{Zone: origin, Reason: fmt.Sprintf("rollback to %d: %s", to, reason), By: who, Since: time.Now()}
				if err := store.PutFreeze(ctx, cli, keys, f); err != nil {
					return withCode(exitNoAccess, err)
				}
				if _, err := log.Append(ctx, audit.Entry{Who: who, Action: "zone.freeze", Target: origin, Result: "frozen", Detail: map[string]string{"reason": f.Reason}}); err != nil {
					return err
				}
			}
			id := fmt.Sprintf("%x", time.Now().UnixNano())
			req := store.RollbackRequest{ID: id, Zone: origin, ToSerial: to, By: who, Reason: reason, Requested: time.Now().UTC()}
			if err := store.PutRollback(ctx, cli, keys, req); err != nil {
				return withCode(exitFailed, err)
			}
			if _, err := log.Append(ctx, audit.Entry{Who: who, Action: "zone.rollback.request", Target: origin, Result: "requested",
				Detail: map[string]string{"id": id, "to_serial": strconv.FormatUint(uint64(to), 10), "reason": reason}}); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !g.json() {
				fmt.Fprintf(out, "rollback %s to %d requested (id %s); waiting for the active site...\n", origin, to, id)
			}
			var done store.RollbackRequest
			for {
				r, _, found, err := store.GetRollback(ctx, cli, keys, origin)
				if err == nil && found && r.ID == id && r.Done {
					done = r
					break
				}
				select {
				case <-ctx.Done():
					return withCode(exitFailed, fmt.Errorf("no outcome from the active site within %s (is its agent running?); the request stays pending", timeout))
				case <-time.After(200 * time.Millisecond):
				}
			}
			if done.Error != "" {
				return withCode(exitFailed, fmt.Errorf("rollback refused at %s: %s", done.Site, done.Error))
			}
			verified := map[string]uint32{}
			for _, sec := range cfg.Secondary {
				for {
					qctx, qc := context.WithTimeout(ctx, time.Second)
					got, err := zonepull.QuerySerial(qctx, sec.Addr, origin)
					qc()
					if err == nil && !zone.SerialLess(got, done.NewSerial) {
						verified[sec.Name] = got
						break
					}
					select {
					case <-ctx.Done():
						return withCode(exitFailed, fmt.Errorf("published as serial %d at %s, but secondary %s still answers %d (%v)", done.NewSerial, done.Site, sec.Name, got, err))
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
			if g.json() {
				return writeJSON(out, map[string]any{"zone": origin, "to_serial": to, "new_serial": done.NewSerial, "site": done.Site, "secondaries": verified, "frozen": !noFreeze})
			}
			fmt.Fprintf(out, "ok: %s serial %d (the content of %d) published at %s; verified at %d secondaries\n", origin, done.NewSerial, to, done.Site, len(verified))
			if !noFreeze {
				fmt.Fprintf(out, "the zone stays frozen: fix the generator, then 'regdr zone thaw %s'\n", origin)
			}
			return nil
		},
	}
	cmd.Flags().Uint32Var(&to, "to", 0, "the stored serial to re-publish")
	cmd.Flags().StringVar(&reason, "reason", "", "why (audited)")
	cmd.Flags().StringVar(&operator, "operator", "", "who (default $REGDR_OPERATOR or the OS user)")
	cmd.Flags().BoolVar(&noFreeze, "no-freeze", false, "do not freeze the zone first")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the outcome and the secondaries")
	return cmd
}
