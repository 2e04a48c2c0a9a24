package failover

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/replicator/pgctl"
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
	if err := pgctl.Fence(ctx, c); err != nil {
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
	if err := pgctl.Unfence(ctx, c); err != nil {
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

// WaitReplayed waits until site's standby replayed lsn (pgctl).
func (d SQLDatabase) WaitReplayed(ctx context.Context, site, lsn string) error {
	want, err := pgctl.ParseLSN(lsn)
	if err != nil {
		return err
	}
	c, err := d.conn(ctx, site)
	if err != nil {
		return err
	}
	defer closeConn(c)
	if err := pgctl.WaitReplayed(ctx, c, want); err != nil {
		return fmt.Errorf("%s: %w", site, err)
	}
	return nil
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

// Promote promotes site's standby (pgctl; a primary is left as it is)
// and returns its timeline.
func (d SQLDatabase) Promote(ctx context.Context, site string) (uint32, error) {
	c, err := d.conn(ctx, site)
	if err != nil {
		return 0, err
	}
	defer closeConn(c)
	tl, err := pgctl.Promote(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("promote %s: %w", site, err)
	}
	return tl, nil
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
