package main

import "github.com/spf13/cobra"

func newDBCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "db", Short: "(being built)", Hidden: true, RunE: groupRun}
}
