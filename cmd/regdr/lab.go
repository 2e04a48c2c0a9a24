package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/drills/load"
	"github.com/regdr/regdr/internal/etcdserver"
	"github.com/regdr/regdr/internal/lab"
	"github.com/regdr/regdr/internal/zonegen"
)

func defaultLabDir() string {
	if d := os.Getenv("REGDR_LAB_DIR"); d != "" {
		return d
	}
	return "/tmp/regdr-lab"
}

func newLabCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A whole two-site deployment on this machine, from real parts",
		Long: `The lab stands up tokyo (active) and osaka (standby) on loopback addresses
(127.0.10.1, 127.0.20.1; witness 127.0.30.1; public secondary 127.0.40.1;
resolver 127.0.50.1): embedded etcd, two PostgreSQL clusters with streaming
replication and a sample registry, a signed TLD zone generated from it, the
agents of all three sites (keys synced and proved at osaka), Knot DNS as the
public secondary, Unbound validating with the lab's KSK, a WAL archive and a
pgBackRest stanza, and two operators (alice, bob) with SSH keys for
approvals. It is what regdr's own integration tests and drills run against.

It needs the Debian packages postgresql-15, knot, knot-dnsutils, unbound and
pgbackrest; 'lab up' names what is missing, and 'lab up --install' installs
them when run as root.`,
		RunE: groupRun,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", defaultLabDir(), "lab directory (env REGDR_LAB_DIR)")

	var o lab.Options
	var install bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Create and start the lab (idempotent refusal if one is running in --dir)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if install {
				if err := lab.Install(ctx, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			o.Dir = dir
			if !g.json() {
				o.Progress = cmd.ErrOrStderr()
			}
			o.Logger = g.logger(cmd.ErrOrStderr())
			start := time.Now()
			l, err := lab.Up(ctx, o)
			if err != nil {
				var me *lab.MissingError
				if errors.As(err, &me) {
					return withCode(exitFailed, err)
				}
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), l.State)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "lab up in %s (%s)\n", time.Since(start).Round(100*time.Millisecond), l.State.Dir)
			fmt.Fprintf(out, "  config:     %s\n", l.State.Config)
			fmt.Fprintf(out, "  zone:       %s (%d domains), secondary %s\n", l.State.TLD, l.State.Domains, l.State.Secondary)
			fmt.Fprintf(out, "  resolver:   %s (Unbound, validating with the lab KSK)\n", l.State.Resolver)
			fmt.Fprintf(out, "  registry:   psql '%s'\n", l.PrimaryConnString())
			fmt.Fprintf(out, "next:\n  export REGDR_CONFIG=%s\n  regdr status\n  regdr lab load --dir %s --rate 20 --journal %s\n  regdr lab down --dir %s\n",
				l.State.Config, l.State.Dir, filepath.Join(l.State.Dir, "load.jsonl"), l.State.Dir)
			return nil
		},
	}
	up.Flags().IntVar(&o.Domains, "domains", 10000, "synthetic domains in the registry")
	up.Flags().IntVar(&o.EtcdMembers, "etcd-members", 1, "etcd members: 1, or 3 (tokyo, osaka, witness)")
	up.Flags().StringVar(&o.TLD, "tld", "test.", "the registry's TLD")
	up.Flags().BoolVar(&o.NSEC3, "nsec3", false, "sign with NSEC3 instead of NSEC")
	up.Flags().BoolVar(&o.Synchronous, "synchronous", false, "synchronous replication managed by the active agent (degrades to async after 3s without a standby)")
	up.Flags().BoolVar(&o.Fresh, "fresh", false, "replace a stopped lab already in --dir (its data is deleted)")
	up.Flags().BoolVar(&install, "install", false, "apt-get install missing Debian packages first (root)")

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop every lab process and check no port is left open (data stays in --dir)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(dir)
			if err != nil {
				st, serr := lab.LoadState(dir)
				if serr != nil {
					return err
				}
				l = &lab.Lab{State: st}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			if err := l.Down(ctx); err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"down": true, "dir": l.State.Dir})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab down: nothing left running from %s\n", l.State.Dir)
			return nil
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Which lab processes are running",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(dir)
			if err != nil {
				return err
			}
			parts := l.Parts()
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), parts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PART\tPID\tSTATE\tDETAIL")
			down := 0
			for _, p := range parts {
				s := "running"
				if !p.Running {
					s, down = "stopped", down+1
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.Name, p.Pid, s, p.Detail)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if down > 0 {
				return withCode(exitFailed, fmt.Errorf("%d lab part(s) not running", down))
			}
			return nil
		},
	}

	var lo load.Options
	var journal string
	var duration time.Duration
	loadCmd := &cobra.Command{
		Use:   "load --rate N --journal FILE",
		Short: "Run registry writes through the journal and record every acknowledged one",
		Long: `Registers, updates and deletes domains at --rate writes per second against
whichever site's database is primary, until interrupted or --duration ends.
Every write goes through the registry's journal table; after each COMMIT the
journal id is appended to --journal (JSON lines). After a failover, comparing
that file with the new primary's journal gives the writes lost (RPO).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if lo.Rate <= 0 {
				return usageErr(errors.New("--rate must be above 0"))
			}
			if journal == "" {
				return usageErr(errors.New("--journal FILE is required"))
			}
			l, err := lab.Open(dir)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			lo.ConnString = l.PrimaryConnString()
			lo.TLD = l.State.TLD
			lo.JournalPath = journal
			lo.Logger = g.logger(cmd.ErrOrStderr())
			stats, err := load.Run(ctx, lo)
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), stats)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "load: %d writes acknowledged (journal ids %d..%d), %d errors; recorded in %s\n",
				stats.Acked, stats.FirstID, stats.LastID, stats.Errors, journal)
			return nil
		},
	}
	loadCmd.Flags().Float64Var(&lo.Rate, "rate", 10, "writes per second")
	loadCmd.Flags().StringVar(&journal, "journal", "", "file to append acknowledged writes to (JSON lines)")
	loadCmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until interrupted)")

	var member string
	var forceNew bool
	etcdCmd := &cobra.Command{
		Use:    "etcd --member NAME",
		Short:  "Run one lab etcd member (started by 'lab up')",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := lab.LoadState(dir)
			if err != nil {
				return err
			}
			m := etcdserver.Member{Name: member, InitialCluster: map[string]string{}, Logger: g.logger(cmd.ErrOrStderr()), ForceNewCluster: forceNew}
			for _, e := range st.Etcd {
				m.InitialCluster[e.Name] = e.PeerURL
				if e.Name == member {
					m.DataDir, m.ClientURL, m.PeerURL = e.DataDir, e.ClientURL, e.PeerURL
				}
			}
			if m.DataDir == "" {
				return usageErr(fmt.Errorf("lab in %s has no etcd member %q", dir, member))
			}
			// A member restarting on its own data dir ignores the
			// initial cluster; etcd reads membership from its WAL.
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			srv, err := etcdserver.Start(ctx, m)
			cancel()
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			srv.Close()
			return nil
		},
	}
	etcdCmd.Flags().StringVar(&member, "member", "", "member name")
	etcdCmd.Flags().BoolVar(&forceNew, "force-new-cluster", false, "restart this member alone from its data (quorum recovery: regdr etcd recover)")

	var nsec3 bool
	gen := &cobra.Command{
		Use:    "zonegen",
		Short:  "Run the lab registry's zone generator (started by 'lab up')",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(dir)
			if err != nil {
				return err
			}
			opts := l.GeneratorOptions(nsec3)
			opts.Logger = g.logger(cmd.ErrOrStderr())
			// An orphan (the command that started it was killed before
			// recording it) stops itself.
			ctx := lab.WhileRecorded(cmd.Context(), dir, "zonegen", os.Getpid(), time.Second, 3)
			var gen zonegen.Generator
			err = gen.Run(ctx, opts)
			if errors.Is(context.Cause(ctx), lab.ErrNotRecorded) {
				opts.Logger.Warn("zone generator stopping: the lab records another generator, or is gone", "dir", dir)
				return nil
			}
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	gen.Flags().BoolVar(&nsec3, "nsec3", false, "sign with NSEC3")

	var site string
	follow := &cobra.Command{
		Use:    "follow [--site SITE]",
		Short:  "Move the lab's zone generator to the new active site (the lab's after_promote hook)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if site == "" {
				site = os.Getenv("REGDR_TO")
			}
			if site == "" {
				return usageErr(errors.New("--site or $REGDR_TO is required"))
			}
			l, err := lab.Open(dir)
			if err != nil {
				return err
			}
			return l.Follow(cmd.Context(), site)
		},
	}
	follow.Flags().StringVar(&site, "site", "", "the new active site (default $REGDR_TO)")

	cmd.AddCommand(up, down, status, loadCmd, etcdCmd, gen, follow)
	return cmd
}
