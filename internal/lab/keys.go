package lab

import (
	"context"

	"github.com/regdr/regdr/internal/config"
)

// planKeys adds the sites' key-transport identities to the lab config.
func (l *Lab) planKeys(cfg *config.Config, o Options) error { return nil }

// upKeys runs once everything else is up.
func (l *Lab) upKeys(ctx context.Context, step func(string, ...any)) error { return nil }
