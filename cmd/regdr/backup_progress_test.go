package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/regdr/regdr/drills/backup"
)

// One line per finished phase always; on a terminal a bar for the running
// phase, erased when it ends.
func TestBackupProgress(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var buf bytes.Buffer
		p := progressPrinter(&buf, tty)
		p(backup.Event{Phase: backup.PhaseRestore, Index: 1})
		p(backup.Event{Phase: backup.PhaseRestore, Index: 1, Done: true, Result: backup.PhaseResult{
			Name: backup.PhaseRestore, Status: backup.StatusFailed, Duration: 1500 * time.Millisecond, Error: "disk full"}})
		out := buf.String()
		if !strings.Contains(out, "  restore   failed     1.50s  disk full\n") {
			t.Errorf("tty=%v: no phase line in %q", tty, out)
		}
		hasBar := strings.Contains(out, "[##..................] 2/8 restore ...")
		if hasBar != tty {
			t.Errorf("tty=%v: progress bar shown %v in %q", tty, hasBar, out)
		}
	}
}
