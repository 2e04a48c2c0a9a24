package pgctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// JournalRow is one row of the registry journal (schema.sql: id bigserial,
// at, op, domain, detail jsonb).
type JournalRow struct {
	ID     int64           `json:"id"`
	At     time.Time       `json:"at"`
	Op     string          `json:"op"`
	Domain *string         `json:"domain"`
	Detail json.RawMessage `json:"detail,omitempty"`
}

// SalvageOptions say where the journal is.
type SalvageOptions struct {
	// Database holding the journal; default "registry". Used by
	// Local.Salvage to connect; Salvage uses the connections as given.
	Database string
	// Table is the journal table, optionally schema-qualified; default
	// "journal". It must have the columns of JournalRow.
	Table string
	// User is the superuser Local.Salvage connects as over its private
	// socket; default "postgres".
	User string
}

func (o SalvageOptions) filled() SalvageOptions {
	if o.Database == "" {
		o.Database = "registry"
	}
	if o.Table == "" {
		o.Table = "journal"
	}
	if o.User == "" {
		o.User = "postgres"
	}
	return o
}

func (o SalvageOptions) table() string {
	return pgx.Identifier(strings.Split(o.Table, ".")).Sanitize()
}

// salvageChunk is how many ids one hash covers. Both sides hash their rows
// per chunk; only chunks whose hashes differ are read row by row, so the
// cost is one scan on each server plus the rows that differ.
const salvageChunk = 1024

// rowHash is a row's content as both servers compute it, independent of
// session settings (TimeZone, DateStyle): epoch with microseconds, jsonb's
// canonical text, NULLs distinct from any string.
const rowHash = `md5(format('%s|%s|%s|%s|%s', id, extract(epoch FROM at),
	quote_nullable(op), quote_nullable(domain), quote_nullable(detail::text)))`

// Salvage returns the journal rows the old primary (oldConn) committed
// that the new primary (newConn) does not have, in id order: rows whose id
// is missing on the new primary, and rows whose id the new primary reused
// for something else after its promotion (its sequence restarts from what
// it had replayed, so ids are compared together with content). Both
// servers share every row up to their fork, so the result is exactly what
// was written on the old timeline after the fork — the acknowledged writes
// the failover lost, plus any whose COMMIT was in flight when the old
// primary died (committed there, never acknowledged).
func Salvage(ctx context.Context, oldConn, newConn *pgx.Conn, opts SalvageOptions) ([]JournalRow, error) {
	opts = opts.filled()
	tbl := opts.table()
	chunkQ := fmt.Sprintf(`SELECT id / %d, md5(string_agg(%s, ',' ORDER BY id)) FROM %s GROUP BY 1`, salvageChunk, rowHash, tbl)
	oldChunks, err := chunkHashes(ctx, oldConn, chunkQ)
	if err != nil {
		return nil, fmt.Errorf("salvage from %s: old side: %w", where(oldConn), err)
	}
	newChunks, err := chunkHashes(ctx, newConn, chunkQ)
	if err != nil {
		return nil, fmt.Errorf("salvage from %s: new side %s: %w", where(oldConn), where(newConn), err)
	}
	var differ []int64
	for c, h := range oldChunks {
		if newChunks[c] != h {
			differ = append(differ, c)
		}
	}
	if len(differ) == 0 {
		return nil, nil
	}
	slices.Sort(differ)
	newRows := map[int64]string{}
	rows, err := newConn.Query(ctx, fmt.Sprintf(`SELECT id, %s FROM %s WHERE id / %d = ANY($1)`, rowHash, tbl, salvageChunk), differ)
	if err != nil {
		return nil, fmt.Errorf("salvage: read %s on %s: %w", opts.Table, where(newConn), err)
	}
	for rows.Next() {
		var id int64
		var h string
		if err := rows.Scan(&id, &h); err != nil {
			rows.Close()
			return nil, fmt.Errorf("salvage: read %s on %s: %w", opts.Table, where(newConn), err)
		}
		newRows[id] = h
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("salvage: read %s on %s: %w", opts.Table, where(newConn), err)
	}
	rows, err = oldConn.Query(ctx, fmt.Sprintf(`SELECT id, at, op, domain, detail::text, %s FROM %s WHERE id / %d = ANY($1) ORDER BY id`,
		rowHash, tbl, salvageChunk), differ)
	if err != nil {
		return nil, fmt.Errorf("salvage: read %s on %s: %w", opts.Table, where(oldConn), err)
	}
	defer rows.Close()
	var out []JournalRow
	for rows.Next() {
		var r JournalRow
		var detail *string
		var h string
		if err := rows.Scan(&r.ID, &r.At, &r.Op, &r.Domain, &detail, &h); err != nil {
			return nil, fmt.Errorf("salvage: read %s on %s: %w", opts.Table, where(oldConn), err)
		}
		if newRows[r.ID] == h {
			continue
		}
		if detail != nil {
			r.Detail = json.RawMessage(*detail)
		}
		r.At = r.At.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("salvage: read %s on %s: %w", opts.Table, where(oldConn), err)
	}
	return out, nil
}

func chunkHashes(ctx context.Context, c *pgx.Conn, q string) (map[int64]string, error) {
	rows, err := c.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[int64]string{}
	for rows.Next() {
		var chunk int64
		var h string
		if err := rows.Scan(&chunk, &h); err != nil {
			return nil, err
		}
		m[chunk] = h
	}
	return m, rows.Err()
}

// Salvage starts the stopped old primary on its own, read-only and
// unreachable by clients — no TCP listener (empty listen_addresses), its unix
// socket in a new private directory, trust only on that socket through a
// private hba file, default_transaction_read_only, no synchronous standby
// to wait for — reads what it has that newConn lacks (the package Salvage),
// and stops it again. Starting it completes its crash recovery on its own
// timeline, so call it before Rewind, which discards those rows. A data
// directory with standby.signal is refused: a standby has no writes of its
// own, and one that was already rewound has lost them.
func (l *Local) Salvage(ctx context.Context, newConn *pgx.Conn, opts SalvageOptions) (rows []JournalRow, err error) {
	opts = opts.filled()
	if _, sock, err := l.pidFile(); err == nil && l.Running() && strings.Contains(sock, "regdr-salvage-") {
		// Left running isolated by an interrupted Salvage: start over.
		if err := l.Stop(ctx, "fast"); err != nil {
			return nil, fmt.Errorf("salvage %s: stop the isolated server an earlier salvage left: %w", l.name(), err)
		}
	}
	if l.Running() {
		return nil, fmt.Errorf("salvage %s: %w (stop it first; it is started isolated for the read)", l.name(), ErrRunning)
	}
	if l.isStandbyDir() {
		return nil, fmt.Errorf("salvage %s: data directory has standby.signal: nothing of its own to salvage (already rewound or reseeded?)", l.name())
	}
	own, err := ownerOf(l.DataDir)
	if err != nil {
		return nil, fmt.Errorf("salvage %s: %w", l.name(), err)
	}
	private, err := os.MkdirTemp("", "regdr-salvage-")
	if err != nil {
		return nil, fmt.Errorf("salvage %s: %w", l.name(), err)
	}
	defer os.RemoveAll(private)
	if err := own.Chown(private); err != nil {
		return nil, fmt.Errorf("salvage %s: %w", l.name(), err)
	}
	hba := filepath.Join(private, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("# regdr salvage: only the private socket, only for this read\nlocal all all trust\n"), 0o600); err != nil {
		return nil, fmt.Errorf("salvage %s: %w", l.name(), err)
	}
	if err := own.Chown(hba); err != nil {
		return nil, fmt.Errorf("salvage %s: %w", l.name(), err)
	}
	// pg_ctl hands -o to a shell; the private path is ours (no quotes or
	// spaces), and an empty listen_addresses needs no quoting.
	const port = 5432 // any: the socket is alone in its directory
	opt := fmt.Sprintf("-c listen_addresses= -c unix_socket_directories=%s -c port=%d -c hba_file=%s"+
		" -c default_transaction_read_only=on -c synchronous_standby_names= -c archive_mode=off -c max_wal_senders=0 -c cluster_name=salvage",
		private, port, hba)
	l.log().Info("starting old primary isolated for salvage", "site", l.name(), "socket_dir", private)
	if err := l.start(ctx, opt); err != nil {
		return nil, fmt.Errorf("salvage %s: %w", l.name(), err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		if serr := l.Stop(sctx, "fast"); serr != nil {
			err = errors.Join(err, fmt.Errorf("salvage %s: stop after reading: %w", l.name(), serr))
		}
	}()
	old, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", private, port, opts.User, opts.Database))
	if err != nil {
		return nil, fmt.Errorf("salvage %s: connect over the private socket: %w", l.name(), err)
	}
	defer closeConn(ctx, old)
	rows, err = Salvage(ctx, old, newConn, opts)
	if err != nil {
		return nil, fmt.Errorf("salvage %s: %w", l.name(), err)
	}
	l.log().Info("salvaged", "site", l.name(), "rows", len(rows))
	return rows, nil
}

// SalvageFormat names the salvage file format in its header line.
const SalvageFormat = "regdr-salvage/1"

// SalvageHeader is the first line of a salvage file.
type SalvageHeader struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Site is where the rows were committed and lost (the old primary).
	Site string `json:"site,omitempty"`
	// Table is the journal table they came from.
	Table string `json:"table"`
	// Timeline and ForkLSN: the old primary's timeline and where the
	// new primary's history left it (from Diverged), if known.
	Timeline uint32 `json:"timeline,omitempty"`
	ForkLSN  LSN    `json:"fork_lsn,omitzero"`
	// Rows is the number of row lines that follow; a reader that finds
	// fewer knows the file is cut short.
	Rows int `json:"rows"`
}

// WriteSalvage writes a salvage file: the header (Format and Rows filled
// in) on the first line, then one JSON row per line in id order. The
// registry re-applies the writes from it.
func WriteSalvage(w io.Writer, h SalvageHeader, rows []JournalRow) error {
	h.Format = SalvageFormat
	h.Rows = len(rows)
	if h.Created.IsZero() {
		h.Created = time.Now().UTC()
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("write salvage header: %w", err)
	}
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write salvage row %d: %w", r.ID, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write salvage: %w", err)
	}
	return nil
}

// ReadSalvage reads a salvage file and checks it is complete.
func ReadSalvage(r io.Reader) (SalvageHeader, []JournalRow, error) {
	dec := json.NewDecoder(r)
	var h SalvageHeader
	if err := dec.Decode(&h); err != nil {
		return h, nil, fmt.Errorf("read salvage header: %w", err)
	}
	if h.Format != SalvageFormat {
		return h, nil, fmt.Errorf("read salvage: format %q, want %q", h.Format, SalvageFormat)
	}
	var rows []JournalRow
	for {
		var row JournalRow
		err := dec.Decode(&row)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return h, rows, fmt.Errorf("read salvage row %d: %w", len(rows)+1, err)
		}
		rows = append(rows, row)
	}
	if len(rows) != h.Rows {
		return h, rows, fmt.Errorf("read salvage: %d rows, header says %d: file cut short", len(rows), h.Rows)
	}
	return h, rows, nil
}

// WriteSalvageFile writes a salvage file into dir (created 0700 if
// missing) as salvage-<site>-<UTC time>.jsonl, mode 0600, atomically: a
// reader never sees a partial file under the final name. It returns the
// path.
func WriteSalvageFile(dir string, h SalvageHeader, rows []JournalRow) (string, error) {
	if h.Created.IsZero() {
		h.Created = time.Now().UTC()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("salvage file: %w", err)
	}
	site := h.Site
	if site == "" {
		site = "unknown"
	}
	path := filepath.Join(dir, fmt.Sprintf("salvage-%s-%s.jsonl", site, h.Created.UTC().Format("20060102T150405.000Z")))
	f, err := os.CreateTemp(dir, ".salvage-*")
	if err != nil {
		return "", fmt.Errorf("salvage file: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := WriteSalvage(f, h, rows); err != nil {
		f.Close()
		return "", fmt.Errorf("salvage file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("salvage file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("salvage file %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("salvage file %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("salvage file %s: %w", path, err)
	}
	return path, nil
}
