package lab

import (
	"context"

	"github.com/regdr/regdr/internal/config"
)

// planBackup adds the backup section to the lab config.
func (l *Lab) planBackup(cfg *config.Config, o Options) error { return nil }

// upBackup runs once everything else is up.
func (l *Lab) upBackup(ctx context.Context, step func(string, ...any)) error { return nil }
