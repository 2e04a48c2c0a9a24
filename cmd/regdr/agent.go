package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/internal/agent"
)

func newAgentCmd(g *globals) *cobra.Command {
	var site string
	var endpoints []string
	cmd := &cobra.Command{
		Use:   "agent --site NAME",
		Short: "Run the agent of one site (normally under systemd)",
		Long: `Runs the site's agent until SIGTERM: it reads the active-site record from etcd,
measures the site's PostgreSQL (role, timeline, WAL position, replication lag;
the active site also writes the replication heartbeat), serves the site's zones
as a hidden primary (AXFR with TSIG, NOTIFY to the secondaries), pulls them from
the active site when standby, gossips with the other agents (memberlist), and
serves HTTP on the site's agent_addr:

  /healthz     200 while the agent runs (body: health and problems)
  /metrics     Prometheus metrics (regdr_*)
  /v1/status   the agent's full view as JSON`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if site == "" {
				site = os.Getenv("REGDR_SITE")
			}
			if site == "" {
				return usageErr(errorf("--site is required (or REGDR_SITE)"))
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if len(endpoints) > 0 {
				cfg.Etcd.Endpoints = endpoints
			}
			a, err := agent.New(cfg, site, g.logger(cmd.ErrOrStderr()))
			if err != nil {
				return usageErr(err)
			}
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "this agent's site (env REGDR_SITE)")
	cmd.Flags().StringSliceVar(&endpoints, "etcd-endpoints", nil, "etcd endpoints for this agent instead of the config's (e.g. only the site's own member, or through a site proxy)")
	return cmd
}
