package main

import "github.com/spf13/cobra"

func newFailoverCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "failover", Short: "(being built)", Hidden: true}
}
