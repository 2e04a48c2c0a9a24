package main

import "github.com/spf13/cobra"

func newDrillCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "drill", Short: "(being built)", Hidden: true, RunE: groupRun}
}
