package config

// Keys tunes DNSSEC key transport between sites.
type Keys struct{}

// SiteIdentity is a site's key-transport identity: the public halves live
// in the config, the private halves in files at that site only (0600).
type SiteIdentity struct {
	AgeRecipient     string `yaml:"age_recipient"`
	SigningPublicKey string `yaml:"signing_public_key"`
	AgeIdentityFile  string `yaml:"age_identity_file,omitempty"`
	SigningKeyFile   string `yaml:"signing_key_file,omitempty"`
}

func (c *Config) validateKeys(v *validator) {}
