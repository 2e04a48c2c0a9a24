package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys"
	"github.com/regdr/regdr/keys/identity"
	"github.com/regdr/regdr/keys/inventory"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "DNSSEC key material between sites: identities, sealed bundles, possession proofs",
		Long: `Each data site holds the zone's DNSSEC private keys. The active site's agent
seals the keys another site lacks (age-encrypted to that site, signed with the
sending site's Ed25519 key) and carries them through etcd; the receiving agent
verifies the signature against the config before decrypting, installs the
files atomically, signs a fresh challenge with each key and stores a signed
receipt. The key-readiness gate blocks a zone version whose DNSKEY set holds a
key some standby site has not proved.`,
		RunE: groupRun,
	}
	cmd.AddCommand(newKeysIdentityCmd(g), newKeysStatusCmd(g), newKeysSyncCmd(g), newKeysInventoryCmd(g))
	return cmd
}

func newKeysIdentityCmd(g *globals) *cobra.Command {
	var site, dir string
	cmd := &cobra.Command{
		Use:   "identity --site SITE --dir DIR",
		Short: "Create a site's key-transport identity and print its identity: block for the config",
		Long: `Creates DIR/age-identity.txt (age X25519) and DIR/signing-key.txt (Ed25519),
both 0600, and prints the identity: block to paste under the site in the
deployment config. Run it at the site; the private files never leave it.
Existing files are never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if site == "" || dir == "" {
				return usageErr(errors.New("--site and --dir are required"))
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return usageErr(err)
			}
			f := identity.DefaultFiles(abs)
			id, err := identity.Generate(f)
			if err != nil {
				return err
			}
			si := config.SiteIdentity{
				AgeRecipient:     id.Public().Age.String(),
				SigningPublicKey: identity.SigningString(id.Public().Signing),
				AgeIdentityFile:  f.AgeIdentity,
				SigningKeyFile:   f.SigningKey,
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), si)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# site %s: paste under its entry in sites:\nidentity:\n  age_recipient: %s\n  signing_public_key: %s\n  age_identity_file: %s\n  signing_key_file: %s\n",
				site, si.AgeRecipient, si.SigningPublicKey, si.AgeIdentityFile, si.SigningKeyFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "site the identity is for")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the private identity files")
	return cmd
}

func newKeysStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Per key and per data site: present, verified, missing or mismatch (exit 1 if any key is missing or mismatched)",
		Long: `Shows every DNSSEC key the sites' agents list in their key directories, and
for each data site whether it holds the key (present), has proved with a signed
receipt that it signs with exactly that key (verified), lacks it (missing) or
holds a private key that does not match the DNSKEY (mismatch).

Exit 0 when every key is present or verified everywhere, 1 when a key is
missing or mismatched at some site, 3 when etcd cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			ov, err := keys.Status(ctx, cli, store.Keys{Prefix: cfg.Etcd.Prefix}, cfg)
			if err != nil {
				return withCode(3, err)
			}
			bad := 0
			for _, k := range ov.Keys {
				for _, s := range k.Sites {
					if s.State == keys.StateMissing || s.State == keys.StateMismatch {
						bad++
					}
				}
			}
			if g.json() {
				if ov.Keys == nil {
					ov.Keys = []keys.KeyStatus{}
				}
				if err := writeJSON(cmd.OutOrStdout(), ov); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				hdr := []string{"ZONE", "TAG", "ROLE", "ALG", "DIGEST"}
				for _, s := range cfg.DataSites() {
					hdr = append(hdr, strings.ToUpper(s.Name))
				}
				fmt.Fprintln(tw, strings.Join(hdr, "\t"))
				for _, k := range ov.Keys {
					role := "ZSK"
					if k.KSK {
						role = "KSK"
					}
					row := []string{k.Zone, fmt.Sprint(k.Tag), role, fmt.Sprint(k.Algorithm), k.Digest[:min(12, len(k.Digest))]}
					for _, s := range k.Sites {
						row = append(row, s.State)
					}
					fmt.Fprintln(tw, strings.Join(row, "\t"))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if len(ov.Keys) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no keys: no agent has published a key inventory")
				}
				for _, k := range ov.Keys {
					for _, s := range k.Sites {
						if s.State == keys.StateMismatch || s.State == keys.StateMissing {
							fmt.Fprintf(cmd.OutOrStdout(), "%s tag %d at %s: %s %s\n", k.Zone, k.Tag, s.Site, s.State, s.Detail)
						}
					}
				}
			}
			if bad > 0 {
				return withCode(1, fmt.Errorf("%d key(s) missing or mismatched at some site", bad))
			}
			return nil
		},
	}
}

func newKeysSyncCmd(g *globals) *cobra.Command {
	var site string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "sync --site SITE",
		Short: "Send the other data sites the keys of SITE they have no receipt for (run at SITE)",
		Long: `Seals the keys in SITE's key directory that another data site has not proved,
one bundle per receiving site, and stores them in etcd for that site's agent.
Needs SITE's private identity files, so run it at SITE. The agents do this on
their own when the key directory changes; this is for operators and scripts.
With --wait, waits until every bundle sent has been opened and proved.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if site == "" {
				return usageErr(errors.New("--site is required"))
			}
			cfg, cli, err := g.connect()
			if err != nil {
				return err
			}
			defer cli.Close()
			s, ok := cfg.Site(site)
			if !ok || s.Witness {
				return usageErr(fmt.Errorf("site %q is not a data site of %s", site, cfg.Path()))
			}
			id, err := keys.LoadIdentity(cfg, site)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second+wait)
			defer cancel()
			sk := store.Keys{Prefix: cfg.Etcd.Prefix}
			snd := &keys.Sender{KV: cli, Keys: sk, Cfg: cfg, Site: site, ID: id,
				Backend: inventory.Dir{Path: cfg.Resolve(s.KeyDir)}, Log: g.logger(cmd.ErrOrStderr())}
			sent, err := snd.Sync(ctx)
			if err != nil {
				return err
			}
			for _, h := range sent {
				fmt.Fprintf(cmd.OutOrStdout(), "sent %s: %s\n", h, strings.Join(h.Keys, ", "))
			}
			if len(sent) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to send: every data site has a receipt for every key")
			}
			if wait <= 0 {
				return nil
			}
			for _, h := range sent {
				for {
					lack, err := snd.Lacking(ctx, h.To)
					if err != nil {
						return err
					}
					if len(lack) == 0 {
						fmt.Fprintf(cmd.OutOrStdout(), "%s proved every key\n", h.To)
						break
					}
					select {
					case <-ctx.Done():
						return fmt.Errorf("%s has not proved %d key(s) within %s", h.To, len(lack), wait)
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the sending site (where this runs)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the receipts (0: do not wait)")
	return cmd
}

func newKeysInventoryCmd(g *globals) *cobra.Command {
	var site string
	cmd := &cobra.Command{
		Use:   "inventory --site SITE",
		Short: "List the key pairs in SITE's key directory (public facts only; run at SITE)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if site == "" {
				return usageErr(errors.New("--site is required"))
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			s, ok := cfg.Site(site)
			if !ok || s.Witness {
				return usageErr(fmt.Errorf("site %q is not a data site of %s", site, cfg.Path()))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			ks, err := keys.ListAll(ctx, cfg, inventory.Dir{Path: cfg.Resolve(s.KeyDir)})
			if err != nil {
				return err
			}
			if g.json() {
				if ks == nil {
					ks = []inventory.Key{}
				}
				return writeJSON(cmd.OutOrStdout(), ks)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ZONE\tTAG\tROLE\tALG\tDIGEST\tSTATE\tFILE")
			for _, k := range ks {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.12s\t%s\t%s\n", k.Zone, k.Tag, k.Role(), k.Algorithm, k.Digest, k.State, k.Name)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the site whose key directory to list")
	return cmd
}
