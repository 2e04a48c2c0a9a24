package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ack is one acknowledged write: the id PostgreSQL returned after COMMIT,
// the server (port) that committed it, and when the client heard back.
type ack struct {
	ID   int64
	Port int
	At   time.Time
}

// loader writes one row at a time at a fixed rate through a connection
// string that names both servers with target_session_attrs=read-write, so
// it follows the primary the way a registry front end would, and keeps
// every acknowledged write in memory. A write that fails is retried on a
// new connection at the next tick; nothing is counted as acknowledged
// unless the COMMIT returned.
type loader struct {
	connString string
	interval   time.Duration
	log        *slog.Logger

	mu     sync.Mutex
	acks   []ack
	errors int
}

const journalDDL = `CREATE TABLE IF NOT EXISTS bench_journal (
	id bigserial PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT clock_timestamp())`

func (l *loader) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil {
			c, cancel := context.WithTimeout(ctx, time.Second)
			var err error
			conn, err = pgx.Connect(c, l.connString)
			cancel()
			if err != nil {
				conn = nil
				l.fail()
				continue
			}
		}
		c, cancel := context.WithTimeout(ctx, time.Second)
		var a ack
		err := conn.QueryRow(c, `INSERT INTO bench_journal DEFAULT VALUES RETURNING id, inet_server_port()`).Scan(&a.ID, &a.Port)
		cancel()
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			l.fail()
			continue
		}
		a.At = time.Now()
		l.mu.Lock()
		l.acks = append(l.acks, a)
		l.mu.Unlock()
	}
}

func (l *loader) fail() {
	l.mu.Lock()
	l.errors++
	l.mu.Unlock()
}

// snapshot copies the acknowledged writes so far.
func (l *loader) snapshot() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ack(nil), l.acks...)
}

// waitAckOn waits until a write acknowledged by the server on port, after
// since, is in the journal.
func (l *loader) waitAckOn(ctx context.Context, port int, since time.Time) (ack, error) {
	for {
		for _, a := range l.snapshot() {
			if a.Port == port && a.At.After(since) {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			return ack{}, fmt.Errorf("no write acknowledged by port %d since %s: %w", port, since.Format(time.StampMilli), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// writeGap is, for a switch from oldPort to newPort started at start,
// the time from the last write acknowledged by the old primary to the
// first one acknowledged by the new primary: how long writers saw no
// primary.
func writeGap(acks []ack, start time.Time, oldPort, newPort int) (lastOld, firstNew ack, err error) {
	fi := -1
	for i, a := range acks {
		if a.At.After(start) && a.Port == newPort {
			fi = i
			break
		}
	}
	if fi < 0 {
		return ack{}, ack{}, fmt.Errorf("no write acknowledged by the new primary (port %d)", newPort)
	}
	firstNew = acks[fi]
	for i := fi - 1; i >= 0; i-- {
		if acks[i].Port == oldPort {
			return acks[i], firstNew, nil
		}
	}
	return ack{}, firstNew, fmt.Errorf("no write acknowledged by the old primary (port %d) before the switch", oldPort)
}

// missing returns the acknowledged ids the server behind conn does not
// have: acknowledged writes lost by a switchover.
func missing(ctx context.Context, conn *pgx.Conn, acks []ack) ([]int64, error) {
	ids := make([]int64, len(acks))
	for i, a := range acks {
		ids[i] = a.ID
	}
	rows, err := conn.Query(ctx, `SELECT x FROM unnest($1::bigint[]) AS x
		WHERE NOT EXISTS (SELECT 1 FROM bench_journal j WHERE j.id = x)`, ids)
	if err != nil {
		return nil, fmt.Errorf("check acknowledged writes: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("check acknowledged writes: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
