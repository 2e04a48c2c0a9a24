package lab

import (
	"context"
	"errors"
	"os"
	"time"
)

// ErrNotRecorded ends a lab process the lab no longer records as its own.
var ErrNotRecorded = errors.New("the lab no longer records this process")

// WhileRecorded returns a context that is cancelled (cause ErrNotRecorded)
// once the lab in dir is gone or records another pid than pid under name,
// on `misses` checks in a row every `every`. A process started by a
// command that was killed before it saved the lab's state (the lab's
// failover hook, killed with its executor in a crash test) is recorded
// nowhere: nothing would stop it, and a second zone generator writing the
// same file would confuse everything after. With this it stops itself.
// The misses allow for the moment between spawning a process and saving
// its pid.
func WhileRecorded(ctx context.Context, dir, name string, pid int, every time.Duration, misses int) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		missed := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st, err := LoadState(dir)
			p, ok := Proc{}, false
			if err == nil {
				p, ok = st.Proc(name)
			}
			switch {
			case err != nil && !errors.Is(err, ErrNoLab) && !errors.Is(err, os.ErrNotExist):
				missed = 0 // unreadable for a moment (being saved): not a verdict
			case ok && p.Pid == pid:
				missed = 0
			default:
				if missed++; missed >= misses {
					cancel(ErrNotRecorded)
					return
				}
			}
		}
	}()
	return ctx
}
