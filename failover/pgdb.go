package failover

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/replicator/pgstate"
)

// SQLDatabase reaches each site's registry database with the conninfo in
// the config, as a superuser (fencing and promotion need one).
type SQLDatabase struct{ Cfg *config.Config }

func (d SQLDatabase) conn(ctx context.Context, site string) (*pgx.Conn, error) {
	s, ok := d.Cfg.Site(site)
	if !ok || s.Postgres == "" {
		return nil, fmt.Errorf("site %s has no postgres conninfo in the config", site)
	}
	c, err := pgx.Connect(ctx, s.Postgres)
	if err != nil {
		return nil, fmt.Errorf("%s database: %w", site, err)
	}
	return c, nil
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// Fence makes site's primary refuse writes (pgstate.Fence).
func (d SQLDatabase) Fence(ctx context.Context, site string) error {
	c, err := d.conn(ctx, site)
	if err != nil {
		return err
	}
	defer closeConn(c)
	if _, err := pgstate.Fence(ctx, c); err != nil {
		return fmt.Errorf("%s: %w", site, err)
	}
	return nil
}

// Unfence lets site's database take writes again.
func (d SQLDatabase) Unfence(ctx context.Context, site string) error {
	c, err := d.conn(ctx, site)
	if err != nil {
		return err
	}
	defer closeConn(c)
	if err := pgstate.Unfence(ctx, c); err != nil {
		return fmt.Errorf("%s: %w", site, err)
	}
	return nil
}

// FlushLSN is pg_current_wal_flush_lsn() on the fenced primary.
func (d SQLDatabase) FlushLSN(ctx context.Context, site string) (string, error) {
	c, err := d.conn(ctx, site)
	if err != nil {
		return "", err
	}
	defer closeConn(c)
	var lsn string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("%s flush LSN: %w", site, err)
	}
	return lsn, nil
}

// WaitReplayed polls the standby's replay LSN every 5 ms: PostgreSQL has
// no event for "replayed up to", and 5 ms is far below the rest of a
// switchover.
func (d SQLDatabase) WaitReplayed(ctx context.Context, site, lsn string) error {
	c, err := d.conn(ctx, site)
	if err != nil {
		return err
	}
	defer closeConn(c)
	var last string
	return poll(ctx, 5*time.Millisecond, func() error {
		var done bool
		err := c.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, true), coalesce(pg_last_wal_replay_lsn()::text, '')", lsn).Scan(&done, &last)
		if err != nil {
			return fmt.Errorf("%s replay LSN: %w", site, err)
		}
		if !done {
			return fmt.Errorf("%s replayed to %s, waiting for %s", site, last, lsn)
		}
		return nil
	})
}

// ReplayLSN is the standby's replay position ("" on a primary).
func (d SQLDatabase) ReplayLSN(ctx context.Context, site string) (string, error) {
	c, err := d.conn(ctx, site)
	if err != nil {
		return "", err
	}
	defer closeConn(c)
	var lsn string
	err = c.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn()::text, '')").Scan(&lsn)
	return lsn, err
}

// Promote runs pg_promote(wait => true) unless site is already primary.
func (d SQLDatabase) Promote(ctx context.Context, site string) (uint32, error) {
	c, err := d.conn(ctx, site)
	if err != nil {
		return 0, err
	}
	defer closeConn(c)
	var inRecovery bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return 0, fmt.Errorf("promote %s: %w", site, err)
	}
	if inRecovery {
		var ok bool
		if err := c.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil || !ok {
			return 0, fmt.Errorf("promote %s: pg_promote returned %v: %v", site, ok, err)
		}
	}
	// The WAL file name's first 8 hex digits are the timeline being
	// written; pg_control_checkpoint lags until the next checkpoint.
	var walfile string
	if err := c.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())").Scan(&walfile); err != nil {
		return 0, fmt.Errorf("%s timeline: %w", site, err)
	}
	tl, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%s timeline from %q: %w", site, walfile, err)
	}
	return uint32(tl), nil
}

// Write writes a heartbeat row: a real registry-database write.
func (d SQLDatabase) Write(ctx context.Context, site string) error {
	c, err := d.conn(ctx, site)
	if err != nil {
		return err
	}
	defer closeConn(c)
	return pgstate.Heartbeat(ctx, c, site)
}
