package pgctl_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/replicator/pgctl"
)

// TestSalvageCompare checks the comparison itself on two databases that
// share 3000 journal rows (three hash chunks): rows only the old side has,
// rows whose id the new side reused for other content, and rows only the
// new side has (not salvage).
func TestSalvageCompare(t *testing.T) {
	t.Parallel()
	c := pglabtest.Primary(t)
	ctx := timeout(t, 60*time.Second)
	admin := pglabtest.Conn(t, c, "registry")
	exec(t, ctx, admin, `CREATE DATABASE old_side`)
	exec(t, ctx, admin, `CREATE DATABASE new_side`)
	sides := map[string]*pgx.Conn{}
	for _, db := range []string{"old_side", "new_side"} {
		conn := pglabtest.Conn(t, c, db)
		if err := registry.Apply(ctx, conn); err != nil {
			t.Fatal(err)
		}
		exec(t, ctx, conn, `INSERT INTO journal (id, at, op, domain, detail)
			SELECT i, timestamptz '2026-11-24 12:00:00+00' + i * interval '1 ms', 'register', 'd' || i,
				CASE WHEN i % 7 = 0 THEN NULL ELSE jsonb_build_object('ns', jsonb_build_array('ns1.x.net.', i)) END
			FROM generate_series(1, 3000) i`)
		sides[db] = conn
	}
	old, nw := sides["old_side"], sides["new_side"]
	// Committed on the old primary after the fork.
	exec(t, ctx, old, `INSERT INTO journal (id, op, domain) SELECT i, 'delete', 'late' || i FROM generate_series(3001, 3010) i`)
	// The new primary never got 1500 and reused 2050 and 3001 for its
	// own writes; it also has writes of its own (3011).
	exec(t, ctx, nw, `DELETE FROM journal WHERE id IN (1500, 2050)`)
	exec(t, ctx, nw, `INSERT INTO journal (id, op, domain) VALUES (2050, 'register', 'new-a'), (3001, 'register', 'new-b'), (3011, 'register', 'new-c')`)
	// Same content in a different session time zone is the same row.
	exec(t, ctx, nw, `SET TimeZone = 'Asia/Tokyo'`)
	exec(t, ctx, old, `SET TimeZone = 'America/Los_Angeles'`)

	rows, err := pgctl.Salvage(ctx, old, nw, pgctl.SalvageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, r := range rows {
		got = append(got, r.ID)
	}
	want := []int64{1500, 2050, 3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009, 3010}
	if len(got) != len(want) {
		t.Fatalf("salvaged ids %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("salvaged ids %v; want %v", got, want)
		}
	}
	if r := rows[0]; r.Op != "register" || r.Domain == nil || *r.Domain != "d1500" || string(r.Detail) == "" ||
		!r.At.Equal(time.Date(2026, 11, 24, 12, 0, 1, 500e6, time.UTC)) {
		t.Fatalf("row 1500 = %+v", r)
	}
	// Nothing to salvage between identical sides.
	if rows, err := pgctl.Salvage(ctx, old, old, pgctl.SalvageOptions{}); err != nil || len(rows) != 0 {
		t.Fatalf("salvage of a database against itself: %d rows, %v", len(rows), err)
	}
}

func TestReadSalvageRefusesDamage(t *testing.T) {
	d := "x"
	rows := []pgctl.JournalRow{{ID: 7, At: time.Date(2026, 11, 24, 1, 2, 3, 4000, time.UTC), Op: "register", Domain: &d, Detail: []byte(`{"ns":["a."]}`)}, {ID: 9, Op: "delete"}}
	var buf bytes.Buffer
	if err := pgctl.WriteSalvage(&buf, pgctl.SalvageHeader{Site: "tokyo", Table: "journal"}, rows); err != nil {
		t.Fatal(err)
	}
	full := buf.String()
	if _, back, err := pgctl.ReadSalvage(strings.NewReader(full)); err != nil || len(back) != 2 || *back[0].Domain != "x" || back[1].Domain != nil {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	lines := strings.SplitAfter(full, "\n")
	for name, text := range map[string]string{
		"cut short":   lines[0] + lines[1],
		"torn row":    lines[0] + lines[1] + lines[2][:10],
		"not salvage": `{"format":"other/1","rows":0}` + "\n",
		"empty":       "",
	} {
		if _, _, err := pgctl.ReadSalvage(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
