package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/drills/backup"
)

func newBackupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Take registry database backups and prove they restore",
		Long: `A backup that has never been restored is not a backup (RIPE NCC 2012 found,
mid-outage, that its backups did not exist). regdr keeps a catalog of backups
in etcd and restore-tests them: integrity, a real restore into a scratch
PostgreSQL, pg_amcheck, semantic checks against what the catalog recorded,
and the zone rebuilt from the restored registry compared with the zone
published at that time. The agent at the verify site runs the test on
schedules.backup_verify.`,
		RunE: groupRun,
	}
	cmd.AddCommand(newBackupTakeCmd(g), newBackupListCmd(g), newBackupVerifyCmd(g))
	return cmd
}

// unreachable marks errors from etcd reads as exit 3.
func unreachable(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection refused") {
		return withCode(exitNoAccess, fmt.Errorf("%s: etcd unreachable: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func newBackupTakeCmd(g *globals) *cobra.Command {
	var site, typ string
	cmd := &cobra.Command{
		Use:   "take [--site S] [--type basebackup|pgbackrest]",
		Short: "Copy a site's registry database into the backup catalog",
		Long: `Takes a base backup of the site's registry database (default: the active
site): pg_basebackup in plain format with backup_manifest and the WAL of the
copy (-X stream) into <backup.dir>/<site>/<id>, or a full pgBackRest backup
of backup.pgbackrest's stanza. The catalog record in etcd holds the id, type,
time, size, the manifest's SHA-256, the LSN range and the registry's domain,
delegation and journal counts at backup time, for the restore test's
semantic check. Run it on the machine that can reach the site's database
and backup.dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if typ != backup.TypeBasebackup && typ != backup.TypePgBackRest {
				return usageErr(fmt.Errorf("--type %q: want basebackup or pgbackrest", typ))
			}
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 6*time.Hour)
			defer cancel()
			if site == "" {
				ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
				site, err = backup.ActiveSite(ectx, cfg, cli)
				ecancel()
				if err != nil {
					return unreachable("backup take: no --site given and the active site is unknown", err)
				}
			}
			o, err := backup.TakeOptionsFor(cfg, site, typ)
			if err != nil {
				return usageErr(err)
			}
			o.Logger = g.logger(cmd.ErrOrStderr())
			b, err := backup.Take(ctx, backup.NewCatalog(cli, cfg.Etcd.Prefix), o)
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), b)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s: %s of %s, %s, LSN %s-%s, %d domains, %d delegations, journal %d\n",
				b.ID, b.Type, b.Site, humanBytes(b.Size), b.StartLSN, b.EndLSN, b.Facts.Domains, b.Facts.Delegations, b.Facts.MaxJournalID)
			return nil
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the site whose database to copy (default: the active site)")
	cmd.Flags().StringVar(&typ, "type", backup.TypeBasebackup, "basebackup or pgbackrest")
	return cmd
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}

func newBackupListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the backup catalog with each backup's last restore test",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			cat := backup.NewCatalog(cli, cfg.Etcd.Prefix)
			bs, err := cat.List(ctx)
			if err != nil {
				return unreachable("backup list", err)
			}
			vs, err := cat.Verifications(ctx)
			if err != nil {
				return unreachable("backup list", err)
			}
			last := map[string]backup.Verification{}
			for _, v := range vs {
				last[v.BackupID] = v
			}
			if g.json() {
				type row struct {
					backup.Backup
					LastVerification *backup.Verification `json:"last_verification,omitempty"`
				}
				rows := []row{}
				for _, b := range bs {
					r := row{Backup: b}
					if v, ok := last[b.ID]; ok {
						r.LastVerification = &v
					}
					rows = append(rows, r)
				}
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tSITE\tTIME\tSIZE\tLSN\tDOMAINS\tLAST VERIFY")
			for _, b := range bs {
				lv := "never"
				if v, ok := last[b.ID]; ok {
					lv = v.Result + " " + v.Finished.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s-%s\t%d\t%s\n", b.ID, b.Type, b.Site, b.Time.Format(time.RFC3339),
					humanBytes(b.Size), b.StartLSN, b.EndLSN, b.Facts.Domains, lv)
			}
			return tw.Flush()
		},
	}
}

func newBackupVerifyCmd(g *globals) *cobra.Command {
	var ref, target, site, operator string
	cmd := &cobra.Command{
		Use:   "verify [--backup ID|latest] [--target-time T] [--site S]",
		Short: "Restore a backup into a scratch PostgreSQL and prove it (exit 0 pass, 1 fail)",
		Long: `Phases, each timed:

  integrity  pg_verifybackup (or pgbackrest verify) and the catalog's manifest checksum
  restore    copy (or pgbackrest restore) into a scratch directory under backup.scratch_dir
  start      a scratch PostgreSQL on a free loopback port, recovered to the backup's
             end (or to --target-time with WAL from backup.wal_archive_dir), promoted
  amcheck    pg_amcheck of every database
  semantic   row counts within backup.row_tolerance_percent of what the catalog recorded,
             journal ids without holes, no dangling references, backup.assertions
  zone       the zone rebuilt from the restored registry must have exactly the
             delegations (NS/DS per name) of the version published at that time at
             --site; no version published then is a failure
  keys       the key bundles addressed to --site as of that time verify, decrypt and
             hold every DNSKEY of that zone version (once opened and removed from
             etcd: the keys installed at --site prove possession); unknown, never
             passed, without a keys section or for an unsigned zone
  teardown   the scratch server stopped and its directory removed, always

The result goes to the catalog in etcd and the audit log. Runs at the verify
site (backup.verify_site, default the standby). Exit 0 passed, 1 failed,
2 bad usage, 3 etcd unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var tt time.Time
			if target != "" {
				t, err := time.Parse(time.RFC3339, target)
				if err != nil {
					return usageErr(fmt.Errorf("--target-time %q: want RFC 3339, e.g. 2026-11-24T12:00:00Z", target))
				}
				tt = t
			}
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx := cmd.Context()
			ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
			defer ecancel()
			b, err := backup.NewCatalog(cli, cfg.Etcd.Prefix).Resolve(ectx, ref)
			if errors.Is(err, backup.ErrNotFound) {
				return usageErr(err)
			}
			if err != nil {
				return unreachable("backup verify", err)
			}
			if site == "" {
				if site, err = backup.VerifySite(ectx, cfg, cli); err != nil {
					return unreachable("backup verify: no --site given", err)
				}
			}
			o, err := backup.VerifyOptionsFor(cfg, cli, site, b)
			if err != nil {
				return usageErr(err)
			}
			o.TargetTime = tt
			o.Logger = g.logger(io.Discard)
			if g.logLevel == "debug" {
				o.Logger = g.logger(cmd.ErrOrStderr())
			}
			out := cmd.OutOrStdout()
			if !g.json() {
				fmt.Fprintf(out, "verifying backup %s (%s of %s, %s) at site %s\n", b.ID, b.Type, b.Site, b.Time.Format(time.RFC3339), site)
				o.Progress = progressPrinter(out, isTerminal(out))
			}
			v, err := backup.Verify(ctx, o)
			if err != nil {
				return usageErr(err)
			}
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer rcancel()
			recErr := backup.Record(rctx, cli, cfg.Etcd.Prefix, operatorName(operator), v)
			if g.json() {
				if err := writeJSON(out, v); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "result: %s", strings.ToUpper(v.Result))
				if u := v.Unknown(); len(u) > 0 {
					fmt.Fprintf(out, " (unknown: %s)", strings.Join(u, ", "))
				}
				fmt.Fprintf(out, " in %.1fs\n", v.Finished.Sub(v.Started).Seconds())
			}
			if recErr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "regdr: verification not fully recorded: %v\n", recErr)
			}
			if !v.Passed() {
				return withCode(exitFailed, fmt.Errorf("backup %s failed verification: %s", b.ID, v.Failure()))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ref, "backup", "latest", "backup id, or latest")
	cmd.Flags().StringVar(&target, "target-time", "", "restore to this RFC 3339 instant with WAL from the archive (default: the backup's own end)")
	cmd.Flags().StringVar(&site, "site", "", "the verifying site, whose zone store is compared (default: backup.verify_site or the standby)")
	cmd.Flags().StringVar(&operator, "operator", "", "who runs the test, for the audit log (default $REGDR_OPERATOR or the OS user)")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressPrinter prints one line per finished phase; on a terminal it
// also draws a bar for the running one, overwritten when it ends.
func progressPrinter(w io.Writer, tty bool) func(backup.Event) {
	n := len(backup.Phases)
	return func(e backup.Event) {
		if !e.Done {
			if tty {
				done := e.Index
				bar := strings.Repeat("#", done*20/n) + strings.Repeat(".", 20-done*20/n)
				fmt.Fprintf(w, "\r[%s] %d/%d %s ...", bar, e.Index+1, n, e.Phase)
			}
			return
		}
		if tty {
			fmt.Fprint(w, "\r\033[K")
		}
		p := e.Result
		msg := p.Detail
		if p.Error != "" {
			msg = p.Error
		}
		fmt.Fprintf(w, "  %-9s %-7s %7.2fs  %s\n", p.Name, p.Status, p.Duration.Seconds(), msg)
	}
}
