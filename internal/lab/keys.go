package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdclient"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys"
	"github.com/regdr/regdr/keys/identity"
)

// labKeySyncInterval: the lab's sweep is quick so a missed file event
// shows up in seconds, not the production default.
const labKeySyncInterval = 2 * time.Second

// planKeys gives each data site a key-transport identity under
// <dir>/<site>/identity/ and turns the key-readiness gate on: the first
// zone goes out only once osaka has proved it holds the lab's keys.
func (l *Lab) planKeys(cfg *config.Config, o Options) error {
	for i := range cfg.Sites {
		s := &cfg.Sites[i]
		if s.Witness {
			continue
		}
		f := identity.DefaultFiles(filepath.Join(o.Dir, s.Name, "identity"))
		id, err := identity.Load(f)
		if errors.Is(err, os.ErrNotExist) {
			id, err = identity.Generate(f)
		}
		if err != nil {
			return fmt.Errorf("lab identity for %s: %w", s.Name, err)
		}
		s.Identity = &config.SiteIdentity{
			AgeRecipient:     id.Public().Age.String(),
			SigningPublicKey: identity.SigningString(id.Public().Signing),
			AgeIdentityFile:  f.AgeIdentity,
			SigningKeyFile:   f.SigningKey,
		}
	}
	cfg.Keys = &config.Keys{RequireReady: true, SyncInterval: config.Duration{Duration: labKeySyncInterval}}
	return nil
}

// upKeys waits until every key at tokyo is verified at osaka (by then the
// first zone has passed the key-readiness gate, so this is quick).
func (l *Lab) upKeys(ctx context.Context, step func(string, ...any)) error {
	if l.Cfg.Keys == nil {
		return nil
	}
	step("waiting for osaka to prove possession of tokyo's DNSSEC keys")
	cli, err := etcdclient.Dial(l.Cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sk := store.Keys{Prefix: l.Cfg.Etcd.Prefix}
	var last string
	for {
		ov, err := keys.Status(ctx, cli, sk, l.Cfg)
		if err == nil {
			ok, n := true, 0
			var why []string
			for _, k := range ov.Keys {
				for _, s := range k.Sites {
					if s.Site == "osaka" {
						n++
						if s.State != keys.StateVerified {
							ok = false
							why = append(why, fmt.Sprintf("tag %d %s", k.Tag, s.State))
						}
					}
				}
			}
			if ok && n >= 2 {
				step("osaka verified %d key(s)", n)
				return nil
			}
			last = strings.Join(why, ", ")
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("osaka did not prove possession of the lab keys within 30s (%s)", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
