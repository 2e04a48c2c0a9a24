package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/internal/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the deployment config", RunE: groupRun}
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Report every problem in a deployment config, with its line and field",
		Long: `Loads the deployment config (FILE, or --config) exactly as the agent would and
reports every problem at once, each with file:line:column and the field path
(sites[1].gossip_addr). Files the config names (TSIG secrets, TLS material) must
exist and be readable; secret files must not be readable by group or others.

Exit code 0 when the config is valid, 1 when it has problems, 2 on bad usage.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.configPath
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path)
			var probs config.Problems
			if err != nil && !errors.As(err, &probs) {
				probs = config.Problems{{File: path, Msg: err.Error()}}
			}
			out := cmd.OutOrStdout()
			if g.json() {
				type jp struct {
					File    string `json:"file"`
					Line    int    `json:"line"`
					Column  int    `json:"column"`
					Path    string `json:"path"`
					Message string `json:"message"`
				}
				res := struct {
					File     string `json:"file"`
					Valid    bool   `json:"valid"`
					Problems []jp   `json:"problems"`
				}{File: path, Valid: len(probs) == 0, Problems: []jp{}}
				for _, p := range probs {
					res.Problems = append(res.Problems, jp{p.File, p.Line, p.Column, p.Path, p.Msg})
				}
				if err := writeJSON(out, res); err != nil {
					return err
				}
			} else if len(probs) == 0 {
				fmt.Fprintf(out, "%s: ok: %d sites, %d zones, %d secondaries, %d operators\n",
					path, len(cfg.Sites), len(cfg.Zones), len(cfg.Secondary), len(cfg.Operators))
			} else {
				for _, p := range probs {
					fmt.Fprintln(out, p.Error())
				}
			}
			if len(probs) > 0 {
				return withCode(exitFailed, fmt.Errorf("%s: %d problem(s)", path, len(probs)))
			}
			return nil
		},
	}
	cmd.AddCommand(check)
	return cmd
}
