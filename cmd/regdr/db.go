package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/pgctl"
)

func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "The registry database's replication between sites",
		RunE:  groupRun,
	}
	var site, operator string
	var timeout time.Duration
	reseed := &cobra.Command{
		Use:   "reseed --site SITE",
		Short: "Rebuild a standby site's database from the active site's (pg_basebackup)",
		Long: `Rebuilds SITE's PostgreSQL server as a fresh streaming standby of the active
site: the replication slot is made on the primary, pg_basebackup copies it
beside the old data directory (never over it), the standby configuration
(primary_conninfo, slot, standby.signal) is written, the new directory is
swapped in and the server started. An interrupted reseed completes on the
next run.

Run it on SITE's database host (it works on sites[].pg_control.data_dir).
It refuses the active site, and a server that is running as a primary.

Exit codes: 0 rebuilt, 1 refused or failed, 2 usage, 3 etcd unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if site == "" {
				return usageErr(errors.New("--site is required"))
			}
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			s, ok := cfg.Site(site)
			if !ok || s.Witness {
				return usageErr(fmt.Errorf("--site %s: not a data site in the config", site))
			}
			if s.PGControl == nil {
				return fmt.Errorf("site %s has no pg_control section: regdr cannot manage its server", site)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			keys := store.Keys{Prefix: cfg.Etcd.Prefix}
			act, found, err := store.GetActive(ctx, cli, keys)
			if err != nil {
				return withCode(3, fmt.Errorf("read the active-site record: %w", err))
			}
			if !found {
				return errors.New("etcd has no active-site record")
			}
			if act.Site == site {
				return fmt.Errorf("refusing to reseed %s: it is the active site (epoch %d); reseed only a standby", site, act.Epoch)
			}
			src, _ := cfg.Site(act.Site)
			if src.PGControl == nil {
				return fmt.Errorf("active site %s has no pg_control.replication_conninfo to stream from", act.Site)
			}
			primary, err := pgx.Connect(ctx, src.Postgres)
			if err != nil {
				return fmt.Errorf("active site %s database: %w", act.Site, err)
			}
			defer primary.Close(context.WithoutCancel(ctx))
			if err := pgctl.EnsureSlot(ctx, primary, s.PGControl.Slot); err != nil {
				return err
			}
			local := &pgctl.Local{Name: site, DataDir: s.PGControl.DataDir, BinDir: s.PGControl.BinDir, LogFile: s.PGControl.LogFile,
				Preserve: []string{pglab.SiteConf}, Log: g.logger(cmd.ErrOrStderr())}
			start := time.Now()
			fmt.Fprintf(cmd.ErrOrStderr(), "reseeding %s from %s (slot %s)...\n", site, act.Site, s.PGControl.Slot)
			err = local.Reseed(ctx, src.PGControl.ReplicationConnInfo+" application_name="+site, s.PGControl.Slot)
			result := "ok"
			if err != nil {
				result = "failed: " + err.Error()
			}
			actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer acancel()
			_, _ = audit.New(cli, keys).Append(actx, audit.Entry{Who: operatorName(operator), Action: "db.reseed", Target: site, Result: result,
				Detail: map[string]string{"from": act.Site, "slot": s.PGControl.Slot}})
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"site": site, "from": act.Site, "seconds": time.Since(start).Seconds()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s rebuilt from %s in %s and started as a standby\n", site, act.Site, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	reseed.Flags().StringVar(&site, "site", "", "the standby site to rebuild")
	reseed.Flags().StringVar(&operator, "operator", "", "who (default $REGDR_OPERATOR or the OS user)")
	reseed.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long the copy may take")
	cmd.AddCommand(reseed)
	return cmd
}
