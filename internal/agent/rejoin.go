package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/status"
	"github.com/regdr/regdr/replicator/pgctl"
)

// rejoinCheck turns this site's database back into a standby of the
// active site when etcd names another site active while the local server
// is still (or again) a primary: the old primary after a switchover, or a
// site declared dead that came back. It first saves the writes the old
// primary has beyond the fork into a salvage file (the exact list of
// acknowledged writes a disaster failover lost), then pg_rewinds it and
// starts it streaming from the new primary. It runs in its own goroutine,
// one at a time; the database is fenced throughout.
func (a *Agent) rejoinCheck(ctx context.Context, reachable bool, role, active string, epoch uint64, pg *status.Postgres) {
	pc := a.site.PGControl
	if pc == nil || !reachable || role != "standby" {
		return
	}
	// A primary that answers, or a server that does not answer at all
	// (stopped after a crash): both may need the rejoin. A standby does
	// not.
	if pg != nil && pg.Reachable && pg.Role != "primary" {
		return
	}
	if (pg == nil || !pg.Reachable) && isStandbyDir(pc.DataDir) {
		return // a standby that is down is restarted by its supervisor, not rewound
	}
	// Never while an operation runs: between its promote and epoch steps
	// the new primary looks exactly like a primary that must rejoin.
	if a.operationRunning(ctx, "") {
		return
	}
	a.mu.Lock()
	busy := a.rejoining
	if !busy {
		a.rejoining = true
	}
	a.mu.Unlock()
	if busy {
		return
	}
	go func() {
		defer func() {
			a.mu.Lock()
			a.rejoining = false
			a.mu.Unlock()
		}()
		if err := a.rejoin(ctx, active, epoch); err != nil {
			a.log.Error("rejoin as standby failed; retrying", "active", active, "epoch", epoch, "err", err)
			a.mu.Lock()
			a.st.Problems = append(a.st.Problems, "rejoin: "+err.Error())
			a.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}()
}

func (a *Agent) rejoin(ctx context.Context, active string, epoch uint64) error {
	pc := a.site.PGControl
	src, ok := a.cfg.Site(active)
	if !ok || src.PGControl == nil || src.Postgres == "" {
		return fmt.Errorf("active site %s has no postgres/pg_control in the config", active)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	newConn, err := pgx.Connect(ctx, src.Postgres)
	if err != nil {
		return fmt.Errorf("new primary at %s: %w", active, err)
	}
	defer newConn.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	if err := newConn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || inRecovery {
		return fmt.Errorf("%s is not a primary yet (in recovery %v, %v)", active, inRecovery, err)
	}
	local := &pgctl.Local{Name: a.site.Name, DataDir: pc.DataDir, BinDir: pc.BinDir, LogFile: pc.LogFile,
		Preserve: []string{pglab.SiteConf}, Log: a.log}
	start := time.Now()
	a.log.Warn("rejoining as standby of the active site", "active", active, "epoch", epoch)
	if local.Running() {
		if err := local.Stop(ctx, "fast"); err != nil {
			return err
		}
	}
	// Salvage before rewind: rewind discards the old timeline's writes.
	// A server that has not diverged has nothing to salvage, and starting
	// it to look would make it diverge.
	diverged, fork, err := pgctl.Diverged(ctx, local, newConn)
	if err != nil {
		return err
	}
	var rows []pgctl.JournalRow
	if diverged {
		if rows, err = local.Salvage(ctx, newConn, pgctl.SalvageOptions{}); err != nil {
			return err
		}
	}
	// Always a file, so "nothing was lost" is a fact on disk too.
	file, err := pgctl.WriteSalvageFile(pc.SalvageDir, pgctl.SalvageHeader{Site: a.site.Name, Table: "journal", ForkLSN: fork}, rows)
	if err != nil {
		return err
	}
	if err := pgctl.EnsureSlot(ctx, newConn, pc.Slot); err != nil {
		return err
	}
	primaryConnInfo := src.PGControl.ReplicationConnInfo + " application_name=" + a.site.Name
	how, err := local.Rejoin(ctx, newConn, src.Postgres, primaryConnInfo, pc.Slot)
	if err != nil {
		return err
	}
	a.log.Info("database rejoined", "how", how)
	a.setFence(status.FenceState{})
	a.log.Warn("rejoined as standby", "active", active, "salvaged_rows", len(rows), "salvage_file", file, "took", time.Since(start).Round(time.Millisecond))
	actx, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel2()
	_, _ = audit.New(a.etcd, a.keys).Append(actx, audit.Entry{Who: "agent " + a.site.Name, Action: "rejoin", Target: a.site.Name, Result: "ok",
		Detail: map[string]string{"active": active, "epoch": strconv.FormatUint(epoch, 10), "salvaged_rows": strconv.Itoa(len(rows)), "salvage_file": file}})
	return nil
}

func isStandbyDir(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "standby.signal"))
	return err == nil
}
