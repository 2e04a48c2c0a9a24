package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/store"
)

func newEtcdCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Coordination cluster recovery",
		RunE:  groupRun,
	}
	var member, labDir, operator string
	recover := &cobra.Command{
		Use:   "recover --member NAME --lab-dir DIR",
		Short: "Restart the surviving etcd member alone (force-new-cluster) after the others are lost",
		Long: `When the site that died held etcd members and quorum is lost (two of three
members gone), nothing can change the active-site record: no failover can
run. Recovery restarts the surviving member from its own data as a
one-member cluster (etcd's --force-new-cluster), which makes etcd writable
again. Writes the survivor had not received are lost; the lost members
must never come back with their old data (re-add them as new members).

The command refuses while another member of the lab still runs, waits until
the recovered member answers, and writes an audit entry. Then plan the
disaster failover as usual.

For an etcd cluster regdr does not run, do the same with etcd itself: stop
the survivor, start it once with --force-new-cluster on its data directory
(see the README runbook "etcd quorum lost").

Exit codes: 0 recovered, 1 refused or failed, 2 usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if member == "" || labDir == "" {
				return usageErr(errors.New("--member and --lab-dir are required (regdr runs etcd members only in the lab; see --help for a real cluster)"))
			}
			l, err := lab.Open(labDir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			if err := l.RecoverEtcd(ctx, member); err != nil {
				return err
			}
			cli, err := etcdclient.Dial(l.Cfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			who := operatorName(operator)
			if _, err := audit.New(cli, store.Keys{Prefix: l.Cfg.Etcd.Prefix}).Append(ctx, audit.Entry{Who: who, Action: "etcd.recover",
				Target: member, Result: "ok", Detail: map[string]string{"method": "force-new-cluster"}}); err != nil {
				return fmt.Errorf("recovered, but the audit entry failed: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "etcd recovered: member %s runs alone (force-new-cluster); plan the failover now\n", member)
			return nil
		},
	}
	recover.Flags().StringVar(&member, "member", "", "the surviving member")
	recover.Flags().StringVar(&labDir, "lab-dir", "", "the lab whose etcd lost quorum")
	recover.Flags().StringVar(&operator, "operator", "", "who (default $REGDR_OPERATOR or the OS user)")
	cmd.AddCommand(recover)
	return cmd
}
