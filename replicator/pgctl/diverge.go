package pgctl

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// HistoryEntry is one line of a timeline history file: timeline Parent
// ended at Switch, where the next timeline began.
type HistoryEntry struct {
	Parent uint32
	Switch LSN
}

// ParseHistory reads a timeline history file (pg_wal/0000000N.history):
// "parentTLI<TAB>switchpoint<TAB>reason" per line; blank lines and #
// comments are skipped.
func ParseHistory(text string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("timeline history line %d %q: want timeline and switch point", n, line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %w", n, err)
		}
		sw, err := ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %w", n, err)
		}
		if len(out) > 0 && (uint32(tli) <= out[len(out)-1].Parent || sw < out[len(out)-1].Switch) {
			return nil, fmt.Errorf("timeline history line %d: timeline %d at %s does not follow %d at %s", n, tli, sw, out[len(out)-1].Parent, out[len(out)-1].Switch)
		}
		out = append(out, HistoryEntry{Parent: uint32(tli), Switch: sw})
	}
	return out, sc.Err()
}

// divergence decides from the old server's timeline and end of WAL and the
// new primary's timeline and history whether the old server has WAL the new
// one does not (diverged: pg_rewind or reseed before it can follow), and
// where their histories forked. oldEnd is where the old server's last
// record starts (its shutdown checkpoint after a clean stop) or, for an old
// standby, its minimum recovery end.
func divergence(oldTLI uint32, oldEnd LSN, newTLI uint32, newPos LSN, history []HistoryEntry) (bool, LSN, error) {
	switch {
	case oldTLI == newTLI:
		// Same timeline: the old one is behind (it can stream) unless it
		// is ahead of the primary it would follow.
		return oldEnd >= newPos, newPos, nil
	case oldTLI > newTLI:
		return false, 0, fmt.Errorf("old server is on timeline %d, newer than the primary's %d: %w", oldTLI, newTLI, ErrNoCommonTimeline)
	}
	for _, h := range history {
		if h.Parent == oldTLI {
			// A record that starts at the switch point or later is
			// not on the new timeline.
			return oldEnd >= h.Switch, h.Switch, nil
		}
	}
	return false, 0, fmt.Errorf("timeline %d is not in the history of the primary's timeline %d: %w", oldTLI, newTLI, ErrNoCommonTimeline)
}

// Diverged reports whether the stopped old server (typically the old
// primary) has WAL that the new primary behind conn does not — then it
// must be rewound (Rewind) or reseeded before it can follow — and the LSN
// where their histories forked. It reads the old server's pg_control
// (after EnsureCleanShutdown: a crashed server first completes crash
// recovery in single-user mode, like pg_rewind would) and the new
// primary's timeline history file (pg_read_file, superuser). After a clean
// switchover (old stopped with "fast", standby replayed its shutdown
// checkpoint, then promoted) the answer is false: the old primary can
// follow without a rewind.
func Diverged(ctx context.Context, old *Local, conn *pgx.Conn) (bool, LSN, error) {
	if old.Running() {
		return false, 0, fmt.Errorf("divergence of %s: %w", old.name(), ErrRunning)
	}
	if err := old.EnsureCleanShutdown(ctx); err != nil {
		return false, 0, fmt.Errorf("divergence of %s: %w", old.name(), err)
	}
	cd, err := old.ControlData(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("divergence of %s: %w", old.name(), err)
	}
	oldTLI, err := cd.Timeline()
	if err != nil {
		return false, 0, fmt.Errorf("divergence of %s: %w", old.name(), err)
	}
	oldEnd, err := cd.Checkpoint()
	if err != nil {
		return false, 0, fmt.Errorf("divergence of %s: %w", old.name(), err)
	}
	if minRec, err := cd.MinRecoveryEnd(); err == nil && minRec > oldEnd {
		oldEnd = minRec
	}
	pos, err := Position(ctx, conn)
	if err != nil {
		return false, 0, fmt.Errorf("divergence of %s: %w", old.name(), err)
	}
	newPos := pos.Current
	if pos.Role != "primary" {
		newPos = pos.Replay
	}
	var history []HistoryEntry
	if pos.Timeline > 1 && pos.Timeline != oldTLI {
		var text string
		file := fmt.Sprintf("pg_wal/%08X.history", pos.Timeline)
		if err := conn.QueryRow(ctx, `SELECT pg_read_file($1)`, file).Scan(&text); err != nil {
			return false, 0, fmt.Errorf("divergence of %s: read %s on %s: %w", old.name(), file, where(conn), err)
		}
		if history, err = ParseHistory(text); err != nil {
			return false, 0, fmt.Errorf("divergence of %s: %s on %s: %w", old.name(), file, where(conn), err)
		}
	}
	d, fork, err := divergence(oldTLI, oldEnd, pos.Timeline, newPos, history)
	if err != nil {
		return false, 0, fmt.Errorf("divergence of %s from %s: %w", old.name(), where(conn), err)
	}
	old.log().Info("divergence", "site", old.name(), "old_timeline", oldTLI, "old_end", oldEnd,
		"new_timeline", pos.Timeline, "fork", fork, "diverged", d)
	return d, fork, nil
}
