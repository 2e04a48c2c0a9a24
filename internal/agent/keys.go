package agent

import (
	"context"
	"sync"

	"github.com/regdr/regdr/replicator/gates"
)

// extraGates are gates beyond the zone content ones (the key-readiness
// gate).
func (a *Agent) extraGates() []gates.Gate { return nil }

// startKeys starts key inventory and sync.
func (a *Agent) startKeys(ctx context.Context, wg *sync.WaitGroup) {}
