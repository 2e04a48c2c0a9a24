package keys

import (
	"crypto/ed25519"
	"fmt"

	"filippo.io/age"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/keys/bundle"
	"github.com/regdr/regdr/keys/identity"
)

// Signers returns the Ed25519 keys of the data sites as the config names
// them: the only keys a bundle or receipt is accepted from.
func Signers(cfg *config.Config) bundle.Signers {
	return func(site string) (ed25519.PublicKey, bool) {
		s, ok := cfg.Site(site)
		if !ok || s.Witness || s.Identity == nil {
			return nil, false
		}
		pk, err := identity.ParseSigning(s.Identity.SigningPublicKey)
		if err != nil {
			return nil, false
		}
		return pk, true
	}
}

// Recipient is site's age recipient from the config.
func Recipient(cfg *config.Config, site string) (age.Recipient, error) {
	s, ok := cfg.Site(site)
	if !ok {
		return nil, fmt.Errorf("site %q is not in the config", site)
	}
	if s.Witness || s.Identity == nil {
		return nil, fmt.Errorf("site %s: %w", site, identity.ErrNoIdentity)
	}
	r, err := age.ParseX25519Recipient(s.Identity.AgeRecipient)
	if err != nil {
		return nil, fmt.Errorf("site %s age recipient: %w", site, err)
	}
	return r, nil
}

// LoadIdentity reads site's private identity from the files the config
// names (resolved against the config's directory).
func LoadIdentity(cfg *config.Config, site string) (*identity.Private, error) {
	s, ok := cfg.Site(site)
	if !ok {
		return nil, fmt.Errorf("site %q is not in the config", site)
	}
	if s.Witness || s.Identity == nil {
		return nil, fmt.Errorf("site %s: %w", site, identity.ErrNoIdentity)
	}
	id, err := identity.Load(identity.Files{
		AgeIdentity: cfg.Resolve(s.Identity.AgeIdentityFile),
		SigningKey:  cfg.Resolve(s.Identity.SigningKeyFile),
	})
	if err != nil {
		return nil, fmt.Errorf("site %s identity: %w", site, err)
	}
	// A private identity whose public half is not the config's would sign
	// receipts nobody accepts: say so at start, not at the first gate.
	if got := identity.SigningString(id.Public().Signing); got != s.Identity.SigningPublicKey {
		return nil, fmt.Errorf("site %s identity: signing key file does not match signing_public_key in the config", site)
	}
	if got := id.Public().Age.String(); got != s.Identity.AgeRecipient {
		return nil, fmt.Errorf("site %s identity: age identity file does not match age_recipient in the config", site)
	}
	return id, nil
}

// peers are the data sites other than site that have an identity.
func peers(cfg *config.Config, site string) []string {
	var out []string
	for _, s := range cfg.DataSites() {
		if s.Name != site && s.Identity != nil {
			out = append(out, s.Name)
		}
	}
	return out
}
