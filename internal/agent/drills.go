package agent

import (
	"context"
	"sync"
)

// startDrills starts the scheduled drills.
func (a *Agent) startDrills(ctx context.Context, wg *sync.WaitGroup) {}
