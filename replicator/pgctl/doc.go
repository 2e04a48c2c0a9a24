// Package pgctl holds the PostgreSQL primitives behind switchover,
// failover, fencing and rejoin. The failover executor sequences them; each
// takes a context, names the server or site in its errors, and is
// idempotent where PostgreSQL allows, because a resumed operation may call
// a step again.
//
// Remote primitives take a superuser *pgx.Conn (from a pool: Acquire, then
// Conn()): Fence, Unfence, IsFenced, Position, WaitReplayed, Promote,
// EnsureSlot, DropSlot, SetSynchronous and Degrader, Salvage. Local ones
// act on the site's own data directory and run the server binaries as its
// owner: Local.Stop, Start, ShutdownCheckpointLSN, Timeline,
// EnsureCleanShutdown, ConfigureStandby, Rewind, Reseed, Salvage, and
// Diverged.
//
// Switchover, zero loss (never promote before the standby has replayed the
// old primary's shutdown checkpoint on the same timeline):
//
//	Fence(old)                      // writes refused, walsenders keep streaming
//	old.Stop(ctx, "fast")           // at the old site; shutdown checkpoint sent to the standby
//	ckpt := old.ShutdownCheckpointLSN(ctx)
//	WaitReplayed(new, ckpt+1)       // the checkpoint record itself replayed
//	Promote(new); Unfence(new)      // Unfence: the new site may carry an old fence
//	EnsureSlot(new, slot of old)
//	Diverged(old, new) == false     // expected after a clean stop
//	old.ConfigureStandby(conninfo of new, slot); old.Start(ctx)
//
// If the old site's agent cannot report ckpt, Position(old).Flush read
// after Fence is the weaker bound (writes already committed are covered,
// the shutdown checkpoint is not).
//
// Disaster (old primary unreachable): Promote(new); Unfence(new);
// EnsureSlot(new, slot of old). The loss window is what the standby had
// not received (pgstate's heartbeat age bounds it).
//
// Rejoin of an old primary when it is back (stopped, or fence and stop it
// first):
//
//	diverged, fork := Diverged(ctx, old, new)   // a crashed server is recovered first
//	if diverged {
//		rows := old.Salvage(ctx, new, opts)   // starts it isolated, reads, stops
//		WriteSalvage(file, header, rows)      // the registry re-applies from it
//	}
//	old.Rejoin(ctx, new, source conn string of new, conninfo of new, slot)
//	                                      // rewind if diverged (reseed if impossible), configure, start
//	DropSlot(old, slot it kept for the other site)  // else it holds WAL while a standby
//
// Salvage on a server that had not diverged finds nothing, but its start
// and stop write a checkpoint past the fork, so Rejoin then rewinds: ask
// Diverged first. Rejoin never salvages: a rewind discards what the old
// primary had beyond the fork.
//
// Reseed rebuilds a standby from scratch and refuses a running primary.
package pgctl
