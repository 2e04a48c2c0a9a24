package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/internal/overview"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func newStatusCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One table of the whole deployment: roles, agents, databases, lag, zone serials",
		Long: `Shows every site: its role under the active-site record (etcd), whether its
agent answers, its PostgreSQL role, timeline, WAL position and replay lag (bytes
and seconds, as the primary measures it), the zone serial each site serves, and
the freeze state.

When etcd cannot be reached, roles come from what the agents last confirmed and
gossiped (memberlist), and the output says so. An agent that does not answer
but is seen alive by its peers shows as "up (gossip)".

Exit code 0 when it could report, 3 when neither etcd nor any agent answered.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cli, err := g.dialEtcd()
			if cfg == nil {
				return err
			}
			if cli != nil {
				defer cli.Close()
			}
			d := overview.Collect(cmd.Context(), cfg, cli, timeout)
			if g.json() {
				if err := writeJSON(cmd.OutOrStdout(), d); err != nil {
					return err
				}
			} else if err := overview.Render(cmd.OutOrStdout(), d); err != nil {
				return err
			}
			anyAgent := false
			for _, s := range d.Sites {
				anyAgent = anyAgent || s.AgentSeen == "http"
			}
			if !d.Etcd.Reachable && !anyAgent {
				return withCode(exitNoAccess, errors.New("neither etcd nor any agent answered"))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for etcd and each agent")
	return cmd
}
