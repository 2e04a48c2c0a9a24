package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/regdr/regdr/internal/approval"
	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/store"
)

func newZoneApproveCmd(g *globals) *cobra.Command {
	var sf signFlags
	var serial uint32
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "approve ZONE [--serial N] (--key FILE | --signature FILE | --print-message)",
		Short: "Approve publishing a zone version the safety gates blocked (two operators needed)",
		Long: `A version the gates blocked is published only when two different operators
from the config have approved that exact version (zone, serial and content
digest), each with their own SSH key. Each approval is checked against the
operator's key in the config, stored in etcd and written to the audit log;
refusals are audited too. The active site's agent publishes the version
within a second of the second approval, and the standby accepts it for the
same reason. The window for approvals is 24 hours from the block.

Look before you sign: the command shows the serial, the gates that failed
and their findings. To sign with a passphrase-protected key or an agent:

  regdr zone approve test. --print-message > msg
  ssh-keygen -Y sign -n regdr -f ~/.ssh/id_ed25519 msg
  regdr zone approve test. --signature msg.sig --operator aiko

Exit codes: 0 approval recorded, 1 refused, 2 usage, 3 etcd unreachable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			origin := dns.Fqdn(args[0])
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			b, _, found, err := store.GetBlocked(ctx, cli, keys, origin)
			if err != nil {
				return withCode(3, fmt.Errorf("read the blocked version of %s: %w", origin, err))
			}
			if !found {
				return fmt.Errorf("no blocked version of %s is recorded: nothing to approve", origin)
			}
			if serial != 0 && b.Serial != serial {
				return fmt.Errorf("the blocked version of %s is serial %d, not %d: look again before approving", origin, b.Serial, serial)
			}
			if b.Published {
				return fmt.Errorf("serial %d of %s was already published by override (approved by %s)", b.Serial, origin, strings.Join(b.Approvers, ", "))
			}
			s := approval.ZoneOverride(b)
			if !sf.printMessage {
				w := cmd.ErrOrStderr()
				fmt.Fprintf(w, "zone %s serial %d (digest %.16s…) from %s, blocked at %s by %s:\n",
					b.Zone, b.Serial, b.Digest, b.Source, b.Site, strings.Join(b.Gates, ", "))
				for _, f := range b.Findings {
					fmt.Fprintf(w, "  %s\n", f)
				}
			}
			a, done, err := sf.approval(cmd, s)
			if err != nil || done {
				return err
			}
			log := audit.New(cli, keys)
			if err := approval.Approve(ctx, cli, keys, log, s, a, cfg.Operators); err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					return withCode(3, err)
				}
				return err
			}
			list, err := approval.List(ctx, cli, keys, s)
			if err != nil {
				return withCode(3, err)
			}
			v, cerr := approval.Check(s, list, cfg.Operators, approval.OverrideApprovers, time.Now())
			out := map[string]any{"zone": b.Zone, "serial": b.Serial, "approved_by": a.Operator,
				"approvers": v.Approvers, "need": approval.OverrideApprovers, "complete": cerr == nil}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			if cerr == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "approved by %s: %d of %d approvals (%s); the active site publishes serial %d now\n",
					a.Operator, len(v.Approvers), approval.OverrideApprovers, strings.Join(v.Approvers, ", "), b.Serial)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "approved by %s: %d of %d approvals; another operator must approve serial %d\n",
					a.Operator, len(v.Approvers), approval.OverrideApprovers, b.Serial)
			}
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().Uint32Var(&serial, "serial", 0, "the serial you reviewed; refused if the blocked version is another")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for etcd")
	return cmd
}
