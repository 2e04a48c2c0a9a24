package pgctl

import (
	"context"
	"strconv"

	"github.com/regdr/regdr/internal/pgrun"
)

// owner is who owns a data directory and so runs the server binaries on
// it (PostgreSQL refuses to run as root and insists PGDATA is its own).
type owner = pgrun.Owner

// ownerOf is the owner of path (or its nearest existing ancestor) when we
// are root; otherwise ourselves.
func ownerOf(path string) (owner, error) { return pgrun.OwnerOf(path) }

// run runs one PostgreSQL binary as own in dir and returns its output.
func run(ctx context.Context, own owner, dir, bin string, args ...string) (string, error) {
	return pgrun.Run(ctx, own, dir, bin, args...)
}

// processAlive reports whether pid is a live process (a zombie is dead).
func processAlive(pid int) bool { return pgrun.ProcessAlive(pid) }

// pgCtlWait turns ctx's deadline into pg_ctl's -t, so its own wait ends no
// later than ours.
func pgCtlWait(ctx context.Context) string { return strconv.Itoa(waitSeconds(ctx)) }
