package pgctl_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/replicator/pgctl"
)

func TestReseed(t *testing.T) {
	t.Parallel()
	tokyo := pglabtest.Primary(t, "osaka")
	osaka := pglabtest.Standby(t, tokyo, "osaka")
	ctx := timeout(t, 90*time.Second)
	tc := pglabtest.Conn(t, tokyo, "registry")
	exec(t, ctx, tc, `CREATE TABLE t (v int)`)
	exec(t, ctx, tc, `INSERT INTO t VALUES (1)`)

	// The running primary is never replaced.
	tl := local(t, tokyo)
	if err := tl.Reseed(ctx, conninfo(osaka, "tokyo"), pglab.SlotName("tokyo")); !errors.Is(err, pgctl.ErrPrimaryRunning) {
		t.Fatalf("reseed of the running primary: %v; want ErrPrimaryRunning", err)
	}
	exec(t, ctx, tc, `INSERT INTO t VALUES (2)`)

	// A running standby is rebuilt from scratch.
	ol := local(t, osaka)
	marker := filepath.Join(osaka.DataDir, "regdr-test-marker")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := ol.Reseed(ctx, conninfo(tokyo, "osaka"), pglab.SlotName("osaka")); err != nil {
		t.Fatal(err)
	}
	if err := osaka.WaitStreaming(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("reseed of a standby: %v", time.Since(begin).Round(time.Millisecond))
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old data directory content survived the reseed: %v", err)
	}
	for _, left := range []string{".reseed", ".old", ".reseed-done"} {
		if _, err := os.Stat(osaka.DataDir + left); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", left, err)
		}
	}
	exec(t, ctx, tc, `INSERT INTO t VALUES (3)`)
	pos, err := pgctl.Position(ctx, tc)
	if err != nil {
		t.Fatal(err)
	}
	oc := pglabtest.Conn(t, osaka, "registry")
	if err := pgctl.WaitReplayed(ctx, oc, pos.Current); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := oc.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("reseeded standby has %d rows (%v); want 3", n, err)
	}

	// Interrupted between the renames: the copy is complete, the data
	// directory gone. Reseed finishes the swap.
	if err := ol.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(osaka.DataDir, osaka.DataDir+".reseed"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(osaka.DataDir+".reseed-done", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ol.Reseed(ctx, conninfo(tokyo, "osaka"), pglab.SlotName("osaka")); err != nil {
		t.Fatal(err)
	}
	if err := osaka.WaitStreaming(ctx); err != nil {
		t.Fatal(err)
	}
}
