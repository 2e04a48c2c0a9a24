package main

import "github.com/spf13/cobra"

func newKeysCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "keys", Short: "(being built)", Hidden: true}
}
