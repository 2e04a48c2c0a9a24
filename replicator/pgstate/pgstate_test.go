package pgstate

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/status"
)

func TestTimelineOf(t *testing.T) {
	tests := []struct {
		walfile string
		want    uint32
	}{
		{"000000010000000000000001", 1},
		{"0000000A00000003000000FF", 10},
		{"0000001f0000000000000002", 31}, // lower case hex parses too
		{"FFFFFFFF0000000000000001", 0xFFFFFFFF},
		{"00000002", 2}, // exactly the timeline part
		{"0000001", 0},  // too short to hold a timeline
		{"", 0},
		{"zzzzzzzz0000000000000001", 0}, // not hex
		{"-0000001000000000000001", 0},  // a sign is not a timeline
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.walfile), func(t *testing.T) {
			if got := timelineOf(tc.walfile); got != tc.want {
				t.Errorf("timelineOf(%q) = %d, want %d", tc.walfile, got, tc.want)
			}
		})
	}
}

// waitFor polls cond until it returns nil or the deadline passes, then
// fails with cond's last error.
func waitFor(t *testing.T, within time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	var last error
	for {
		c, cc := context.WithTimeout(ctx, 2*time.Second)
		last = cond(c)
		cc()
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s: %v", what, within, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestMeasureLab runs Measure and Heartbeat against a real streaming pair.
// The subtests are steps of one story and run in order on the same pair.
func TestMeasureLab(t *testing.T) {
	primary := pglabtest.Primary(t, "osaka")
	standby := pglabtest.Standby(t, primary, "osaka")
	pc := pglabtest.Conn(t, primary, "registry")
	sc := pglabtest.Conn(t, standby, "registry")

	t.Run("primary", func(t *testing.T) {
		var st *status.Postgres
		// Right after the standby connects the primary knows what it sent
		// but not yet what was replayed. Until it does, the lag must not
		// read as zero (a planned switchover waits for zero lag); poll
		// until the first feedback arrives, checking that on every pass.
		sawUnknown := false
		waitFor(t, 10*time.Second, "osaka's first replay feedback", func(ctx context.Context) error {
			var err error
			if st, err = Measure(ctx, pc); err != nil {
				return err
			}
			if len(st.Replicas) != 1 {
				return fmt.Errorf("replicas %+v", st.Replicas)
			}
			if r := st.Replicas[0]; r.ReplayLSN == "" {
				sawUnknown = true
				if r.LagBytes <= 0 || r.LagSeconds != nil {
					t.Fatalf("replica with no replay position reports lag %d bytes, seconds %v; want > 0 bytes and unknown seconds",
						r.LagBytes, r.LagSeconds)
				}
				return errors.New("no replay position yet")
			}
			return nil
		})
		t.Logf("saw a replica before its first feedback: %v", sawUnknown)
		if !st.Reachable || st.Role != "primary" || st.Timeline != 1 || st.LSN == "" {
			t.Fatalf("primary: reachable %v role %q timeline %d lsn %q; want true primary 1 and an LSN",
				st.Reachable, st.Role, st.Timeline, st.LSN)
		}
		if st.ReceiveLSN != "" || st.HeartbeatAgeSeconds != nil {
			t.Errorf("primary reports standby-only fields: receive %q heartbeat age %v", st.ReceiveLSN, st.HeartbeatAgeSeconds)
		}
		r := st.Replicas[0]
		if r.Name != "osaka" || r.State != "streaming" || r.SentLSN == "" || r.ReplayLSN == "" {
			t.Fatalf("replica = %+v, want osaka streaming with sent and replay LSNs", r)
		}
		if st.MeasuredAt.IsZero() || time.Since(st.MeasuredAt) > time.Minute {
			t.Errorf("measured at %v: not now", st.MeasuredAt)
		}
	})

	t.Run("standby before any heartbeat", func(t *testing.T) {
		// regdr.heartbeat does not exist yet: that is "no heartbeat
		// seen", not an error.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		st, err := Measure(ctx, sc)
		if err != nil {
			t.Fatalf("measure standby without heartbeat table: %v", err)
		}
		if st.Role != "standby" || st.HeartbeatAgeSeconds != nil {
			t.Fatalf("standby: role %q heartbeat age %v; want standby and no age", st.Role, st.HeartbeatAgeSeconds)
		}
	})

	t.Run("heartbeat and a write catch up", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		// First use creates the table; the second is a plain upsert.
		for i := range 2 {
			if err := Heartbeat(ctx, pc, "tokyo"); err != nil {
				t.Fatalf("heartbeat %d on primary: %v", i+1, err)
			}
		}
		var rows int
		if err := pc.QueryRow(ctx, `SELECT count(*) FROM regdr.heartbeat WHERE site = 'tokyo'`).Scan(&rows); err != nil {
			t.Fatalf("read heartbeat back: %v", err)
		}
		if rows != 1 {
			t.Fatalf("heartbeat rows for tokyo = %d, want 1 (upsert)", rows)
		}
		for _, s := range []string{
			`CREATE TABLE pgstate_probe (id int PRIMARY KEY, v text)`,
			`INSERT INTO pgstate_probe SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g`,
		} {
			if _, err := pc.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		waitFor(t, 10*time.Second, "osaka to replay everything", func(ctx context.Context) error {
			st, err := Measure(ctx, pc)
			if err != nil {
				return err
			}
			if len(st.Replicas) != 1 {
				return fmt.Errorf("replicas %+v", st.Replicas)
			}
			r := st.Replicas[0]
			if r.LagBytes != 0 || r.LagSeconds == nil {
				return fmt.Errorf("lag %d bytes, seconds %v", r.LagBytes, r.LagSeconds)
			}
			if *r.LagSeconds < 0 || *r.LagSeconds > 10 {
				return fmt.Errorf("lag seconds %v out of range", *r.LagSeconds)
			}
			return nil
		})
	})

	t.Run("standby", func(t *testing.T) {
		var st *status.Postgres
		// The heartbeat row must have replayed: poll until the standby
		// sees it, then check the whole view.
		waitFor(t, 10*time.Second, "osaka to see the heartbeat", func(ctx context.Context) error {
			var err error
			if st, err = Measure(ctx, sc); err != nil {
				return err
			}
			if st.HeartbeatAgeSeconds == nil {
				return errors.New("no heartbeat age yet")
			}
			return nil
		})
		if !st.Reachable || st.Role != "standby" || st.Timeline != 1 {
			t.Fatalf("standby: reachable %v role %q timeline %d; want true standby 1", st.Reachable, st.Role, st.Timeline)
		}
		if st.LSN == "" || st.ReceiveLSN == "" {
			t.Fatalf("standby: replay LSN %q receive LSN %q; want both", st.LSN, st.ReceiveLSN)
		}
		if len(st.Replicas) != 0 {
			t.Errorf("standby lists replicas %+v", st.Replicas)
		}
		// Heartbeats were written seconds ago at most; clocks are the
		// same machine's, so the age cannot be negative by more than
		// rounding.
		if age := *st.HeartbeatAgeSeconds; age < -0.5 || age > 30 {
			t.Errorf("heartbeat age %.3f s, want between 0 and 30", age)
		}
	})

	t.Run("heartbeat on standby is refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		err := Heartbeat(ctx, sc, "osaka")
		if err == nil {
			t.Fatal("heartbeat on a standby succeeded; want a read-only error")
		}
		var pgErr *pgconn.PgError
		// 25006 read_only_sql_transaction: the standby is in recovery.
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
			t.Fatalf("heartbeat on standby: %v; want SQLSTATE 25006 (read-only)", err)
		}
	})

	t.Run("backend frozen", func(t *testing.T) {
		// A backend that never answers (a hung disk, SIGSTOP) must not
		// hold Measure past its context.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn := pglabtest.Conn(t, primary, "registry")
		var pid int
		if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatalf("backend pid: %v", err)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("stop backend %d: %v", pid, err)
		}
		defer func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Errorf("continue backend %d: %v", pid, err)
			}
		}()
		measureFails(t, conn)
	})

	t.Run("database stopped", func(t *testing.T) {
		// The agent measures through a pool; after the server stops, the
		// pool must report the failure, not wait to reconnect.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		pcfg, err := pgxpool.ParseConfig(standby.ConnString("registry"))
		if err != nil {
			t.Fatal(err)
		}
		pcfg.ConnConfig.ConnectTimeout = time.Second
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			t.Fatalf("pool: %v", err)
		}
		defer pool.Close()
		if _, err := Measure(ctx, pool); err != nil {
			t.Fatalf("measure through the pool while running: %v", err)
		}
		stopCluster(ctx, t, standby)
		// The first call finds the pooled connection killed by the
		// shutdown, the second must dial and be refused.
		measureFails(t, pool)
		measureFails(t, pool)
		measureFails(t, sc) // a connection opened before the stop
	})
}

func stopCluster(ctx context.Context, t *testing.T, c *pglab.Cluster) {
	t.Helper()
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatalf("stop %s: %v", c.Name, err)
	}
}

// measureFails asserts Measure returns an error, and within its 2 s
// context (plus scheduling slack).
func measureFails(t *testing.T, q Querier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	st, err := Measure(ctx, q)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("measure succeeded (%+v); want an error", st)
	}
	if took > 3*time.Second {
		t.Fatalf("measure took %s to fail (%v); want at most its 2 s context", took, err)
	}
	t.Logf("measure failed after %s: %v", took.Round(time.Millisecond), err)
}
