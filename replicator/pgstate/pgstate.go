// Package pgstate measures a site's registry database: whether PostgreSQL
// is a primary or a standby, its timeline and WAL position, and replication
// lag in bytes and seconds. The primary's pg_stat_replication is the
// authority for lag (never decide from a standby read); the standby adds
// the age of the newest replicated heartbeat row, which is an honest upper
// bound of the data-loss window when the primary is gone — unlike
// pg_last_xact_replay_timestamp, it does not grow while the primary is
// merely idle (postgres_exporter#385).
package pgstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regdr/regdr/internal/status"
)

// HeartbeatDDL creates regdr's own table in the registry database. It lives
// in schema regdr so it never collides with the registry's tables.
const HeartbeatDDL = `CREATE SCHEMA IF NOT EXISTS regdr;
CREATE TABLE IF NOT EXISTS regdr.heartbeat (
	site text PRIMARY KEY,
	ts   timestamptz NOT NULL,
	lsn  pg_lsn NOT NULL
)`

// Querier is the part of a pgx connection or pool pgstate needs.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Measure reads the database's replication state. It never writes.
func Measure(ctx context.Context, q Querier) (*status.Postgres, error) {
	st := &status.Postgres{MeasuredAt: time.Now()}
	var inRecovery bool
	if err := q.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return nil, fmt.Errorf("pg_is_in_recovery: %w", err)
	}
	st.Reachable = true
	if !inRecovery {
		st.Role = "primary"
		var lsn, walfile string
		err := q.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())`).Scan(&lsn, &walfile)
		if err != nil {
			return nil, fmt.Errorf("current WAL position: %w", err)
		}
		st.LSN = lsn
		st.Timeline = timelineOf(walfile)
		rows, err := q.Query(ctx, `SELECT application_name, state, coalesce(sync_state, ''),
			coalesce(sent_lsn::text, ''), coalesce(write_lsn::text, ''), coalesce(flush_lsn::text, ''),
			coalesce(replay_lsn::text, ''),
			pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(replay_lsn, '0/0'::pg_lsn))::bigint,
			extract(epoch FROM replay_lag)::float8
			FROM pg_stat_replication ORDER BY application_name`)
		if err != nil {
			return nil, fmt.Errorf("pg_stat_replication: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var r status.Replica
			var lag *float64
			if err := rows.Scan(&r.Name, &r.State, &r.SyncState, &r.SentLSN, &r.WriteLSN, &r.FlushLSN, &r.ReplayLSN, &r.LagBytes, &lag); err != nil {
				return nil, fmt.Errorf("pg_stat_replication row: %w", err)
			}
			// replay_lag is NULL once the standby has caught up and
			// the primary is idle: that is zero lag, not unknown. But
			// replay_lsn is also NULL until a new standby's first
			// feedback: then nothing is confirmed replayed, so the lag
			// is the whole WAL and its age unknown — never zero, or a
			// switchover waiting for zero lag would go ahead.
			if lag == nil && r.LagBytes == 0 && r.ReplayLSN != "" {
				zero := 0.0
				lag = &zero
			}
			r.LagSeconds = lag
			st.Replicas = append(st.Replicas, r)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("pg_stat_replication: %w", err)
		}
		rows.Close()
		// Slot health: an inactive slot keeps WAL until the disk fills;
		// a lost one means the standby needs a reseed.
		srows, err := q.Query(ctx, `SELECT slot_name, active, coalesce(wal_status, ''),
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint
			FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name`)
		if err != nil {
			return nil, fmt.Errorf("pg_replication_slots: %w", err)
		}
		defer srows.Close()
		for srows.Next() {
			var sl status.Slot
			if err := srows.Scan(&sl.Name, &sl.Active, &sl.WALStatus, &sl.RetainedBytes); err != nil {
				return nil, fmt.Errorf("pg_replication_slots row: %w", err)
			}
			st.Slots = append(st.Slots, sl)
		}
		if err := srows.Err(); err != nil {
			return nil, fmt.Errorf("pg_replication_slots: %w", err)
		}
		return st, nil
	}
	st.Role = "standby"
	var recv, replay *string
	if err := q.QueryRow(ctx, `SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text`).Scan(&recv, &replay); err != nil {
		return nil, fmt.Errorf("standby WAL positions: %w", err)
	}
	if replay != nil {
		st.LSN = *replay
	}
	if recv != nil {
		st.ReceiveLSN = *recv
	}
	var lastReplay *time.Time
	if err := q.QueryRow(ctx, `SELECT pg_last_xact_replay_timestamp()`).Scan(&lastReplay); err != nil {
		return nil, fmt.Errorf("last replay timestamp: %w", err)
	}
	st.LastReplay = lastReplay
	var tli *int64
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1),
		(SELECT timeline_id FROM pg_control_checkpoint()))::bigint`).Scan(&tli)
	if err != nil {
		return nil, fmt.Errorf("standby timeline: %w", err)
	}
	if tli != nil {
		st.Timeline = uint32(*tli)
	}
	var age *float64
	err = q.QueryRow(ctx, `SELECT extract(epoch FROM clock_timestamp() - max(ts))::float8 FROM regdr.heartbeat`).Scan(&age)
	if err != nil && !isUndefinedTable(err) {
		return nil, fmt.Errorf("heartbeat age: %w", err)
	}
	st.HeartbeatAgeSeconds = age
	return st, nil
}

// Heartbeat writes this site's heartbeat row on the primary. Each write is
// also a WAL record, so an idle registry still shows replication moving.
func Heartbeat(ctx context.Context, q Querier, site string) error {
	_, err := q.Exec(ctx, `INSERT INTO regdr.heartbeat (site, ts, lsn) VALUES ($1, clock_timestamp(), pg_current_wal_lsn())
		ON CONFLICT (site) DO UPDATE SET ts = excluded.ts, lsn = excluded.lsn`, site)
	if err != nil && isUndefinedTable(err) {
		if _, err = q.Exec(ctx, HeartbeatDDL); err != nil {
			return fmt.Errorf("create regdr.heartbeat: %w", err)
		}
		return Heartbeat(ctx, q, site)
	}
	if err != nil {
		return fmt.Errorf("write heartbeat for %s: %w", site, err)
	}
	return nil
}

// timelineOf reads the timeline from a WAL file name (its first 8 hex
// digits), which on a primary is the timeline being written.
func timelineOf(walfile string) uint32 {
	if len(walfile) < 8 {
		return 0
	}
	v, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

func isUndefinedTable(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && (pgErr.SQLState() == "42P01" || pgErr.SQLState() == "3F000")
}
