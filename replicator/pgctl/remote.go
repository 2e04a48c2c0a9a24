package pgctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/regdr/regdr/internal/pgrun"
)

// Expected outcomes the caller may check with errors.Is.
var (
	// ErrStillWritable: after fencing, a fresh session could still
	// write (for example a role or database setting overrides the
	// server-wide default_transaction_read_only).
	ErrStillWritable = errors.New("server still accepts writes")
	// ErrSlotActive: a replication slot is in use by a connected
	// standby, so it is not dropped.
	ErrSlotActive = errors.New("replication slot is active")
	// ErrNotStandby: the server is not (and never was, since its start)
	// in recovery, so it has no replay position.
	ErrNotStandby = errors.New("server is not a standby")
)

// pollEvery is how often the waits below ask PostgreSQL again. PostgreSQL
// offers no notification for "replay reached X" or "configuration
// reloaded" to a client, so these waits poll; 10 ms keeps the added
// latency well under the ~150 ms a promotion takes while costing one tiny
// query per tick.
const pollEvery = 10 * time.Millisecond

// pollQueryTimeout bounds one polling query. Polls run detached from the
// caller's ctx: pgx closes a connection whose query is cancelled, and a
// wait that times out must leave the caller's session usable. The caller's
// ctx is checked between polls.
const pollQueryTimeout = 5 * time.Second

func pollRow(ctx context.Context, conn *pgx.Conn, sql string, args []any, dest ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pollQueryTimeout)
	defer cancel()
	return conn.QueryRow(qctx, sql, args...).Scan(dest...)
}

// where names the server a connection reaches, for error messages.
func where(conn *pgx.Conn) string {
	if conn == nil || conn.PgConn() == nil {
		return "postgres"
	}
	if nc := conn.PgConn().Conn(); nc != nil {
		switch a := nc.RemoteAddr().(type) {
		case *net.TCPAddr:
			return "postgres " + a.String()
		case *net.UnixAddr:
			return "postgres " + a.Name
		}
	}
	cfg := conn.Config()
	return "postgres " + net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// freshConfig is a configuration that reaches exactly the server conn is
// connected to (not a fallback host) without read-write validation, for a
// second session that checks what a newly connecting client would see.
func freshConfig(conn *pgx.Conn) *pgx.ConnConfig {
	cfg := conn.Config().Copy()
	cfg.Fallbacks = nil
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	if nc := conn.PgConn().Conn(); nc != nil {
		switch a := nc.RemoteAddr().(type) {
		case *net.TCPAddr:
			cfg.Host = a.IP.String()
			cfg.Port = uint16(a.Port)
		case *net.UnixAddr:
			// The socket is <dir>/.s.PGSQL.<port>.
			cfg.Host = filepath.Dir(a.Name)
			if p, err := strconv.Atoi(strings.TrimPrefix(filepath.Ext(a.Name), ".")); err == nil {
				cfg.Port = uint16(p)
			}
		}
	}
	return cfg
}

func withFresh(ctx context.Context, conn *pgx.Conn, f func(*pgx.Conn) error) error {
	c, err := pgx.ConnectConfig(ctx, freshConfig(conn))
	if err != nil {
		return fmt.Errorf("open a fresh session: %w", err)
	}
	defer closeConn(ctx, c)
	return f(c)
}

// closeConn says goodbye even if ctx is done, without waiting long.
func closeConn(ctx context.Context, c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx) // a failed goodbye changes nothing
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Fence stops the server behind conn (a superuser session) from accepting
// writes while it keeps running, streaming WAL and answering reads:
//
//  1. ALTER SYSTEM SET default_transaction_read_only = on, so the fence
//     survives a restart, and pg_reload_conf();
//  2. wait until a fresh session starts read-only, which proves the
//     postmaster has reloaded (backends forked before that would
//     otherwise start read-write);
//  3. terminate every client backend but this session (walsenders keep
//     streaming, so a standby still receives everything written before
//     the fence), waiting for each to exit: this ends transactions that
//     began read-write before the reload;
//  4. check from a fresh session that a write is refused (SQLSTATE 25006).
//
// It is idempotent. The limit: default_transaction_read_only is a default,
// and a session may still run SET transaction_read_only = off (any role
// may, for its own transaction), so Fence stops well-behaved clients — the
// registry application, the load generator — not a deliberate writer. A
// real site adds what this cannot: revoke LOGIN from the application role
// or stop the server (Local.Stop), and a load balancer health check that
// stops routing to a fenced site. With synchronous replication, a backend
// terminated while waiting for the standby's acknowledgement has already
// committed locally (PostgreSQL warns so): such a write may exist here and
// not on the standby.
func Fence(ctx context.Context, conn *pgx.Conn) error {
	srv := where(conn)
	if _, err := conn.Exec(ctx, `ALTER SYSTEM SET default_transaction_read_only = on`); err != nil {
		return fmt.Errorf("fence %s: persist default_transaction_read_only: %w", srv, err)
	}
	if err := reloadAndWait(ctx, conn, "on"); err != nil {
		return fmt.Errorf("fence %s: %w", srv, err)
	}
	if err := terminateClients(ctx, conn); err != nil {
		return fmt.Errorf("fence %s: %w", srv, err)
	}
	err := withFresh(ctx, conn, func(c *pgx.Conn) error {
		writable, err := probeWrite(ctx, c)
		if err != nil {
			return err
		}
		if writable {
			return ErrStillWritable
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fence %s: verify: %w", srv, err)
	}
	return nil
}

// Unfence lifts Fence: it resets the server-wide default and waits until a
// fresh session starts read-write (on a standby, until the default is off:
// recovery keeps it read-only anyway). Idempotent.
func Unfence(ctx context.Context, conn *pgx.Conn) error {
	srv := where(conn)
	// This session may itself have been made read-only by the fence;
	// ALTER SYSTEM is allowed either way, but say what we mean.
	if _, err := conn.Exec(ctx, `SET default_transaction_read_only = off`); err != nil {
		return fmt.Errorf("unfence %s: %w", srv, err)
	}
	if _, err := conn.Exec(ctx, `ALTER SYSTEM RESET default_transaction_read_only`); err != nil {
		return fmt.Errorf("unfence %s: reset default_transaction_read_only: %w", srv, err)
	}
	if err := reloadAndWait(ctx, conn, "off"); err != nil {
		return fmt.Errorf("unfence %s: %w", srv, err)
	}
	return nil
}

// IsFenced reports whether the server's persisted configuration
// (postgresql.auto.conf, what ALTER SYSTEM wrote) makes transactions
// read-only by default. It reads the file's current content, so it is true
// from the moment Fence persisted the setting, also across restarts.
func IsFenced(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var v *string
	err := conn.QueryRow(ctx, `SELECT setting FROM pg_file_settings
		WHERE name = 'default_transaction_read_only' AND sourcefile LIKE '%postgresql.auto.conf'
		ORDER BY seqno DESC LIMIT 1`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("is %s fenced: %w", where(conn), err)
	}
	return v != nil && isOn(*v), nil
}

func isOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y":
		return true
	}
	return false
}

// reloadAndWait reloads the configuration and waits until a fresh session
// sees default_transaction_read_only = want.
func reloadAndWait(ctx context.Context, conn *pgx.Conn, want string) error {
	return reloadUntil(ctx, conn, "default_transaction_read_only", want)
}

// reloadUntil reloads the configuration and waits until a fresh session
// shows setting = want. A fresh session inherits the postmaster's
// configuration, so this proves the reload reached every new backend.
func reloadUntil(ctx context.Context, conn *pgx.Conn, setting, want string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("reload configuration: %w", err)
	}
	var last string
	for {
		err := withFresh(ctx, conn, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT current_setting($1)`, setting).Scan(&last)
		})
		if err == nil && last == want {
			return nil
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for new sessions to see %s=%q (last: %q): %w", setting, want, last, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// terminateClients signals every client backend but ours at once and waits
// until they are gone. (pg_terminate_backend's own timeout waits for each
// in turn, about 60 ms apiece here.)
func terminateClients(ctx context.Context, conn *pgx.Conn) error {
	var pids []int32
	err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(pid) FILTER (WHERE pg_terminate_backend(pid)), '{}')
		FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&pids)
	if err != nil {
		return fmt.Errorf("terminate client sessions: %w", err)
	}
	for len(pids) > 0 {
		var left int
		if err := pollRow(ctx, conn, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, []any{pids}, &left); err != nil {
			return fmt.Errorf("wait for terminated sessions to exit: %w", err)
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d terminated sessions to exit: %w", left, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
	return nil
}

// probeWrite tries a catalog write in a transaction that is always rolled
// back and reports whether the server allowed it.
func probeWrite(ctx context.Context, c *pgx.Conn) (bool, error) {
	tx, err := c.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("probe write: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // rollback after failure is best effort
	_, err = tx.Exec(ctx, `CREATE TABLE regdr_fence_probe ()`)
	switch sqlState(err) {
	case "":
		if err != nil {
			return false, fmt.Errorf("probe write: %w", err)
		}
		return true, nil
	case "25006": // read_only_sql_transaction: fenced (or a standby)
		return false, nil
	default:
		return false, fmt.Errorf("probe write: %w", err)
	}
}

// WALPosition is where a server's WAL stands (a type named Position
// would clash with the function).
type WALPosition struct {
	// Role is "primary" or "standby".
	Role string `json:"role"`
	// Timeline on a primary is the one it writes; on a standby the one
	// it last received (or, before streaming, its last restartpoint's).
	Timeline uint32 `json:"timeline"`
	// Current and Flush: a primary's insert and flush positions.
	Current LSN `json:"current,omitzero"`
	Flush   LSN `json:"flush,omitzero"`
	// Receive and Replay: a standby's received-and-flushed and replayed
	// positions (zero when unknown, e.g. before streaming started).
	Receive LSN `json:"receive,omitzero"`
	Replay  LSN `json:"replay,omitzero"`
	// LastReplay is the commit time of the last replayed transaction;
	// it grows old while the primary is idle, so it is not lag.
	LastReplay time.Time `json:"last_replay,omitzero"`
	// ReplayPause is pg_get_wal_replay_pause_state(): "not paused",
	// "pause requested" or "paused".
	ReplayPause string `json:"replay_pause,omitempty"`
}

// Position reads the server's role and WAL positions.
func Position(ctx context.Context, conn *pgx.Conn) (WALPosition, error) {
	srv := where(conn)
	var inRecovery bool
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return WALPosition{}, fmt.Errorf("position of %s: %w", srv, err)
	}
	if !inRecovery {
		var cur, flush, walfile string
		err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, pg_current_wal_flush_lsn()::text,
			pg_walfile_name(pg_current_wal_lsn())`).Scan(&cur, &flush, &walfile)
		if err != nil {
			return WALPosition{}, fmt.Errorf("position of primary %s: %w", srv, err)
		}
		p := WALPosition{Role: "primary", Timeline: timelineOfWalfile(walfile)}
		var err1, err2 error
		p.Current, err1 = ParseLSN(cur)
		p.Flush, err2 = ParseLSN(flush)
		if err := errors.Join(err1, err2); err != nil {
			return WALPosition{}, fmt.Errorf("position of primary %s: %w", srv, err)
		}
		return p, nil
	}
	var recv, replay *string
	var at *time.Time
	var pause string
	var tli *int64
	err := conn.QueryRow(ctx, `SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
		pg_last_xact_replay_timestamp(), pg_get_wal_replay_pause_state(),
		coalesce((SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1),
			(SELECT timeline_id FROM pg_control_checkpoint()))::bigint`).Scan(&recv, &replay, &at, &pause, &tli)
	if err != nil {
		return WALPosition{}, fmt.Errorf("position of standby %s: %w", srv, err)
	}
	p := WALPosition{Role: "standby", ReplayPause: pause}
	var err1, err2 error
	p.Receive, err1 = parseNullLSN(recv)
	p.Replay, err2 = parseNullLSN(replay)
	if err := errors.Join(err1, err2); err != nil {
		return WALPosition{}, fmt.Errorf("position of standby %s: %w", srv, err)
	}
	if at != nil {
		p.LastReplay = *at
	}
	if tli != nil {
		p.Timeline = uint32(*tli)
	}
	return p, nil
}

// timelineOfWalfile reads the timeline from a WAL file name's first 8 hex
// digits.
func timelineOfWalfile(walfile string) uint32 {
	if len(walfile) < 8 {
		return 0
	}
	v, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

// WaitReplayed waits until the standby behind conn has replayed WAL up to
// lsn (pg_last_wal_replay_lsn() >= lsn), bounded by ctx. PostgreSQL has no
// client notification for replay progress, so this polls every 10 ms.
// pg_last_wal_replay_lsn is the end of the last replayed record, so to wait
// until a record that starts at X (a shutdown checkpoint) is replayed, pass
// X+1. It still answers after the standby was promoted (its final replay
// position), so a resumed operation may call it again.
//
// The caller must know lsn is on the standby's timeline history: this
// compares positions only (a standby that follows the primary it measures
// always is).
func WaitReplayed(ctx context.Context, conn *pgx.Conn, lsn LSN) error {
	srv := where(conn)
	var replayed LSN
	var pause string
	for {
		var s *string
		err := pollRow(ctx, conn, `SELECT pg_last_wal_replay_lsn()::text,
			CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'promoted' END`, nil, &s, &pause)
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("wait for %s to replay %s: replayed %s (replay %s): %w", srv, lsn, replayed, pause, ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("wait for %s to replay %s: %w", srv, lsn, err)
		}
		if s == nil {
			return fmt.Errorf("wait for %s to replay %s: %w", srv, lsn, ErrNotStandby)
		}
		if replayed, err = ParseLSN(*s); err != nil {
			return fmt.Errorf("wait for %s to replay %s: %w", srv, lsn, err)
		}
		if replayed >= lsn {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to replay %s: replayed %s (replay %s): %w", srv, lsn, replayed, pause, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// Promote promotes the standby behind conn (pg_promote), waits until it
// has left recovery, and returns the timeline it now writes. A server that is already a
// primary is left alone and its timeline returned, so a resumed operation
// may call Promote again. Promote does not lift a fence: a site that was
// fenced before it became a standby keeps default_transaction_read_only;
// call Unfence after promoting.
func Promote(ctx context.Context, conn *pgx.Conn) (uint32, error) {
	srv := where(conn)
	var inRecovery bool
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return 0, fmt.Errorf("promote %s: %w", srv, err)
	}
	if inRecovery {
		// pg_promote(wait => true) polls every 100 ms; asking without
		// waiting and polling here at 10 ms ends the write outage sooner.
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_promote(false)`).Scan(&ok); err != nil {
			return 0, fmt.Errorf("promote %s: %w", srv, err)
		}
		for inRecovery {
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("promote %s: still in recovery: %w", srv, ctx.Err())
			case <-time.After(pollEvery):
			}
			if err := pollRow(ctx, conn, `SELECT pg_is_in_recovery()`, nil, &inRecovery); err != nil {
				return 0, fmt.Errorf("promote %s: %w", srv, err)
			}
		}
	}
	var walfile string
	if err := conn.QueryRow(ctx, `SELECT pg_walfile_name(pg_current_wal_lsn())`).Scan(&walfile); err != nil {
		return 0, fmt.Errorf("promote %s: read timeline: %w", srv, err)
	}
	return timelineOfWalfile(walfile), nil
}

// waitSeconds is ctx's remaining time in whole seconds (at least 1; 60
// without a deadline), for server-side waits that take seconds.
func waitSeconds(ctx context.Context) int { return pgrun.WaitSeconds(ctx) }

// EnsureSlot makes sure the server has a physical replication slot name,
// reserving WAL from now on (so WAL a standby still needs is kept even
// before it first connects). An existing physical slot is kept as it is.
func EnsureSlot(ctx context.Context, conn *pgx.Conn, name string) error {
	srv := where(conn)
	var kind string
	err := conn.QueryRow(ctx, `SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&kind)
	switch {
	case err == nil && kind == "physical":
		return nil
	case err == nil:
		return fmt.Errorf("ensure slot %s on %s: it exists as a %s slot, want physical", name, srv, kind)
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("ensure slot %s on %s: %w", name, srv, err)
	}
	_, err = conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, name)
	if err != nil && sqlState(err) != "42710" { // duplicate_object: made meanwhile
		return fmt.Errorf("ensure slot %s on %s: %w", name, srv, err)
	}
	return nil
}

// DropSlot drops the replication slot name if it exists. A slot in use by
// a connected standby is not dropped (ErrSlotActive): the standby would
// reconnect and the WAL it needs would be gone.
func DropSlot(ctx context.Context, conn *pgx.Conn, name string) error {
	srv := where(conn)
	var active bool
	err := conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("drop slot %s on %s: %w", name, srv, err)
	}
	if active {
		return fmt.Errorf("drop slot %s on %s: %w", name, srv, ErrSlotActive)
	}
	_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, name)
	switch sqlState(err) {
	case "":
		if err != nil {
			return fmt.Errorf("drop slot %s on %s: %w", name, srv, err)
		}
		return nil
	case "42704": // undefined_object: dropped meanwhile
		return nil
	case "55006": // object_in_use: a standby connected meanwhile
		return fmt.Errorf("drop slot %s on %s: %w: %w", name, srv, ErrSlotActive, err)
	default:
		return fmt.Errorf("drop slot %s on %s: %w", name, srv, err)
	}
}
