package config

import (
	"fmt"
	"time"

	"filippo.io/age"

	"github.com/regdr/regdr/keys/identity"
)

// Keys tunes DNSSEC key transport between sites (issue 5). Without this
// section keys are not carried between sites and no key gate runs.
type Keys struct {
	// BundleMaxBytes caps one sealed bundle as stored in etcd; 0 means
	// DefaultBundleMaxBytes.
	BundleMaxBytes int `yaml:"bundle_max_bytes,omitempty"`
	// RequireReady turns on the key-readiness gate: a zone version whose
	// DNSKEY set holds a key not proved at every standby data site is
	// blocked (a rollover must never leave the DR site unable to sign).
	RequireReady bool `yaml:"require_ready"`
	// SyncInterval is the period of the active site's sweep of its key
	// directory (changes are also seen at once by a file watch); 0 means
	// DefaultKeySyncInterval.
	SyncInterval Duration `yaml:"sync_interval,omitempty"`
}

// DefaultBundleMaxBytes: a bundle of a few dozen keys is tens of KiB;
// etcd's request limit is 1.5 MiB and every watcher pays for a big value.
const DefaultBundleMaxBytes = 256 << 10

// DefaultKeySyncInterval: the file watch carries new keys within a second;
// the sweep only catches what a watch can miss (events dropped, a key
// directory replaced), so it can be slow.
const DefaultKeySyncInterval = 10 * time.Second

// MaxBytes is BundleMaxBytes or its default.
func (k *Keys) MaxBytes() int {
	if k == nil || k.BundleMaxBytes <= 0 {
		return DefaultBundleMaxBytes
	}
	return k.BundleMaxBytes
}

// Interval is SyncInterval or its default.
func (k *Keys) Interval() time.Duration {
	if k == nil || k.SyncInterval.Duration <= 0 {
		return DefaultKeySyncInterval
	}
	return k.SyncInterval.Duration
}

// SiteIdentity is a site's key-transport identity: the public halves live
// in the config, the private halves in files at that site only (0600).
type SiteIdentity struct {
	AgeRecipient     string `yaml:"age_recipient"`
	SigningPublicKey string `yaml:"signing_public_key"`
	AgeIdentityFile  string `yaml:"age_identity_file,omitempty"`
	SigningKeyFile   string `yaml:"signing_key_file,omitempty"`
}

func (c *Config) validateKeys(v *validator) {
	for i, s := range c.Sites {
		p := fmt.Sprintf("sites[%d].identity", i)
		id := s.Identity
		if s.Witness {
			if id != nil {
				v.add(p, "a witness site holds no DNSSEC keys; remove identity")
			}
			continue
		}
		if id == nil {
			if c.Keys != nil {
				v.add(p, "missing required field (the keys section carries DNSSEC keys between data sites, each needs an identity: regdr keys identity --site %s)", s.Name)
			}
			continue
		}
		if v.require(p+".age_recipient", id.AgeRecipient) {
			if _, err := age.ParseX25519Recipient(id.AgeRecipient); err != nil {
				v.add(p+".age_recipient", "bad age recipient: want an age1... X25519 recipient")
			}
		}
		if v.require(p+".signing_public_key", id.SigningPublicKey) {
			if _, err := identity.ParseSigning(id.SigningPublicKey); err != nil {
				v.add(p+".signing_public_key", "%v", err)
			}
		}
		v.require(p+".age_identity_file", id.AgeIdentityFile)
		v.require(p+".signing_key_file", id.SigningKeyFile)
	}
	k := c.Keys
	if k == nil {
		return
	}
	if k.BundleMaxBytes < 0 {
		v.add("keys.bundle_max_bytes", "must not be negative, got %d", k.BundleMaxBytes)
	}
	if k.BundleMaxBytes > 1<<20 {
		v.add("keys.bundle_max_bytes", "%d is above 1 MiB: etcd refuses requests over 1.5 MiB", k.BundleMaxBytes)
	}
	if k.SyncInterval.Duration < 0 {
		v.add("keys.sync_interval", "duration must be positive, got %s", formatDuration(k.SyncInterval.Duration))
	}
}
