package config

import (
	"os"
	"testing"
	"time"
)

func TestKeysSection(t *testing.T) {
	data, err := os.ReadFile("testdata/keys-valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, probs := Parse(data, "testdata/keys-valid.yaml")
	if len(probs) > 0 {
		t.Fatalf("valid keys config has problems:\n%v", probs)
	}
	if c.Keys == nil || !c.Keys.RequireReady {
		t.Fatalf("keys section not read: %+v", c.Keys)
	}
	if got := c.Keys.Interval(); got != 5*time.Second {
		t.Errorf("interval %s, want 5s", got)
	}
	if got := c.Keys.MaxBytes(); got != DefaultBundleMaxBytes {
		t.Errorf("max bytes %d, want the default %d", got, DefaultBundleMaxBytes)
	}
	tokyo, _ := c.Site("tokyo")
	if tokyo.Identity == nil || tokyo.Identity.AgeRecipient[:4] != "age1" {
		t.Fatalf("tokyo identity: %+v", tokyo.Identity)
	}
	// No keys section: defaults, and identities are optional.
	var none *Keys
	if none.MaxBytes() != DefaultBundleMaxBytes || none.Interval() != DefaultKeySyncInterval {
		t.Error("nil Keys does not give the defaults")
	}
}
