package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/agent"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdclient"
)

// globals are the persistent flags every command shares.
type globals struct {
	configPath string
	output     string
	logLevel   string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "regdr",
		Short: "Disaster-recovery replication and failover controller for a DNS registry",
		Long: `regdr keeps a DNS registry's two sites ready to take over from each other.
Today it measures the registry database's streaming replication, serves and
replicates the zones behind publication safety gates (zone check, freeze,
thaw), keeps a hash-chained audit log in etcd, and stands up a whole two-site
lab on one machine. Failover, key transport, backup restore tests and drills
are being built (see the README's status table).

One binary is both the per-site agent (regdr agent) and the operators' command
line. Every command that reports takes --output table|json.

Try it on one machine:  regdr lab up && regdr status --config /tmp/regdr-lab/regdr.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       agent.Version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return usageErr(fmt.Errorf("--output %q: want table or json", g.output))
			}
			return nil
		},
	}
	defConfig := os.Getenv("REGDR_CONFIG")
	if defConfig == "" {
		defConfig = "/etc/regdr/regdr.yaml"
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", defConfig, "deployment config file (env REGDR_CONFIG)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(
		newConfigCmd(g),
		newAgentCmd(g),
		newStatusCmd(g),
		newAuditCmd(g),
		newLabCmd(g),
		newZoneCmd(g),
		newKeysCmd(g),
		newBackupCmd(g),
		newDrillCmd(g),
		newFailoverCmd(g),
		newDBCmd(g),
		newEtcdCmd(g),
	)
	return root
}

type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func usageErr(err error) error     { return usageError{err} }

func isUsage(err error) bool {
	if _, ok := err.(usageError); ok {
		return true
	}
	// cobra's own argument errors.
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "accepts ") || strings.HasPrefix(msg, "requires at least")
}

func (g *globals) json() bool { return g.output == "json" }

func (g *globals) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

func (g *globals) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", g.configPath, err)
	}
	return cfg, nil
}

// dialEtcd loads the config and dials its etcd. The config comes back even
// when the dial fails, for commands (status) that report without etcd.
func (g *globals) dialEtcd() (*config.Config, *clientv3.Client, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	cli, err := etcdclient.Dial(cfg)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, cli, nil
}

// connect is dialEtcd for commands that cannot work without etcd: a config
// that does not load is its own error, an etcd that cannot be reached
// exits 3.
func (g *globals) connect() (*config.Config, *clientv3.Client, error) {
	cfg, cli, err := g.dialEtcd()
	if err != nil && cfg != nil {
		return nil, nil, withCode(exitNoAccess, fmt.Errorf("etcd: %w", err))
	}
	return cfg, cli, err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// groupRun makes a command group refuse an unknown subcommand with a usage
// error (exit 2) instead of printing help and exiting 0, which would let
// `regdr config chekc f` pass in a script.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr(fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
	}
	return cmd.Help()
}
