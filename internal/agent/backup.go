package agent

import (
	"context"
	"sync"
)

// startBackup starts the scheduled backup restore tests.
func (a *Agent) startBackup(ctx context.Context, wg *sync.WaitGroup) {}
