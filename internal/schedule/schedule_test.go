package schedule_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/schedule"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNext(t *testing.T) {
	tests := []struct {
		cron, after, want string
	}{
		{"* * * * *", "2026-11-24T10:00:00Z", "2026-11-24T10:01:00Z"},
		{"* * * * *", "2026-11-24T10:00:59Z", "2026-11-24T10:01:00Z"},
		{"30 3 * * *", "2026-11-24T03:30:00Z", "2026-11-25T03:30:00Z"},
		{"30 3 * * *", "2026-11-24T03:29:59Z", "2026-11-24T03:30:00Z"},
		{"*/15 0-6,22-23 * * 1-5", "2026-11-24T06:50:00Z", "2026-11-24T22:00:00Z"},
		// 2026-11-28 is a Saturday: the next weekday slot is Monday.
		{"*/15 0-6,22-23 * * 1-5", "2026-11-27T23:50:00Z", "2026-11-30T00:00:00Z"},
		{"0 10 1 */3 7", "2026-11-24T00:00:00Z", "2027-01-01T10:00:00Z"},
		// 7 is Sunday, as in Vixie cron: 2026-11-29 is a Sunday.
		{"0 12 * * 7", "2026-11-24T00:00:00Z", "2026-11-29T12:00:00Z"},
		{"0 12 * * 6-7", "2026-11-24T00:00:00Z", "2026-11-28T12:00:00Z"},
		{"0 12 * * 1,7", "2026-11-29T13:00:00Z", "2026-11-30T12:00:00Z"},
		// Evaluated in UTC whatever the zone of the input.
		{"0 0 * * *", "2026-11-24T08:00:00+09:00", "2026-11-24T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.cron+"@"+tt.after, func(t *testing.T) {
			s, err := schedule.Parse(tt.cron)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Next(mustTime(t, tt.after))
			if !got.Equal(mustTime(t, tt.want)) {
				t.Errorf("Next(%s) = %s, want %s", tt.after, got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, expr := range []string{"@daily", "* * * *", "61 * * * *", "* * * * * *", ""} {
		if _, err := schedule.Parse(expr); err == nil {
			t.Errorf("Parse(%q) accepted", expr)
		}
	}
}

// fakeClock is one agent's clock: SleepUntil jumps straight to the time
// asked for, so a minutely schedule runs as fast as etcd answers.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return nil
}

// Two agents with the same "* * * * *" schedule, clocks a few seconds
// apart, each visiting every slot: every slot runs exactly once.
func TestTwoRunnersRunEachSlotOnce(t *testing.T) {
	_, cli := etcdtest.Start(t)
	start := mustTime(t, "2026-11-24T10:00:30Z")
	const slots = 25
	end := start.Add(slots * time.Minute)

	var mu sync.Mutex
	runs := map[time.Time][]string{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	done := make(chan string, 2)
	for i, owner := range []string{"agent/tokyo", "agent/osaka"} {
		clock := &fakeClock{now: start.Add(time.Duration(i) * 7 * time.Second)}
		r := &schedule.Runner{Client: cli, Prefix: "/t", Owner: owner, Clock: clock, Logger: etcdtest.Logger(t)}
		rctx, rcancel := context.WithCancel(ctx)
		job := schedule.Job{Name: "backup-verify", Cron: "* * * * *", Run: func(ctx context.Context, slot time.Time) error {
			mu.Lock()
			runs[slot] = append(runs[slot], owner)
			mu.Unlock()
			return nil
		}}
		// Stop each runner once its clock has passed the last slot.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for clock.Now().Before(end) && rctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			rcancel()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.Run(rctx, job)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Run returned %v", owner, err)
			}
			done <- owner
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("runners did not reach the last slot in time")
	}
	mu.Lock()
	defer mu.Unlock()
	ran := map[string]int{}
	for s := start.Truncate(time.Minute).Add(time.Minute); !s.After(end.Add(-time.Minute)); s = s.Add(time.Minute) {
		owners := runs[s]
		if len(owners) != 1 {
			t.Errorf("slot %s ran %d times (%v), want once", s.Format("15:04"), len(owners), owners)
			continue
		}
		ran[owners[0]]++
	}
	for s, owners := range runs {
		if len(owners) > 1 {
			t.Errorf("slot %s ran %d times (%v)", s.Format("15:04"), len(owners), owners)
		}
	}
	t.Logf("slots run per agent: %v", ran)
}

func TestClaimSlot(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := t.Context()
	slot := mustTime(t, "2026-11-24T10:00:00Z")
	if err := schedule.ClaimSlot(ctx, cli, "/t", "job", slot, "a", slot, time.Hour); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	err := schedule.ClaimSlot(ctx, cli, "/t", "job", slot, "b", slot, time.Hour)
	if !errors.Is(err, schedule.ErrClaimed) {
		t.Fatalf("second claim: %v, want ErrClaimed", err)
	}
	if want := "held by a"; !contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder (%q)", err, want)
	}
	// Another job's same slot, and the same job's next slot, are free.
	if err := schedule.ClaimSlot(ctx, cli, "/t", "other", slot, "b", slot, time.Hour); err != nil {
		t.Errorf("other job: %v", err)
	}
	if err := schedule.ClaimSlot(ctx, cli, "/t", "job", slot.Add(time.Minute), "b", slot, time.Hour); err != nil {
		t.Errorf("next slot: %v", err)
	}
	resp, err := cli.Get(ctx, schedule.SlotKey("/t", "job", slot))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("slot key: %v %v, want one key under a lease", resp, err)
	}
}

func TestIneligibleRunnerNeverClaims(t *testing.T) {
	_, cli := etcdtest.Start(t)
	start := mustTime(t, "2026-11-24T10:00:30Z")
	clock := &fakeClock{now: start}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	asked := 0
	r := &schedule.Runner{Client: cli, Prefix: "/t", Owner: "a", Clock: clock, Eligible: func(context.Context) bool {
		asked++
		if asked >= 3 {
			cancel()
		}
		return false
	}}
	r.Run(ctx, schedule.Job{Name: "j", Cron: "* * * * *", Run: func(context.Context, time.Time) error {
		t.Error("ran although not eligible")
		return nil
	}})
	resp, err := cli.Get(context.Background(), "/t/schedule/", clientv3WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Errorf("ineligible runner left %d claims", len(resp.Kvs))
	}
}
