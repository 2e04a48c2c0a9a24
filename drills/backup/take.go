package backup

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/internal/registry"
)

// PgBackRest names a stanza and the configuration file that describes it
// (repository path, pg1-path/port/socket). regdr never reads
// /etc/pgbackrest.conf.
type PgBackRest struct {
	Stanza     string
	ConfigFile string
	// RepoPath is repo1-path; the catalog hashes the backup's manifest
	// there.
	RepoPath string
}

func (p *PgBackRest) args(cmd string, extra ...string) []string {
	return append([]string{"--config=" + p.ConfigFile, "--stanza=" + p.Stanza, "--log-level-console=warn", "--log-level-stderr=error", cmd}, extra...)
}

// TakeOptions configure Take.
type TakeOptions struct {
	// Type is TypeBasebackup (default) or TypePgBackRest.
	Type string
	// Site is the site whose database is copied.
	Site string
	// ConnString reaches that site's registry database as a role that
	// may replicate (keyword/value form: pg_basebackup reads it too).
	ConnString string
	// Dir is the backup root; a base backup goes to <Dir>/<Site>/<id>.
	Dir string
	// BinDir holds pg_basebackup (pglab.FindBinDir finds it).
	BinDir     string
	PgBackRest *PgBackRest
	Now        func() time.Time
	Logger     *slog.Logger
}

// Take copies the site's database, records the registry facts of that
// instant and adds the backup to the catalog. Nothing is catalogued if
// the copy fails.
func Take(ctx context.Context, cat *Catalog, o TakeOptions) (Backup, error) {
	b, err := TakeUncatalogued(ctx, o)
	if err != nil {
		return Backup{}, err
	}
	if err := cat.Add(ctx, b); err != nil {
		return Backup{}, err
	}
	return b, nil
}

// TakeUncatalogued is Take without the catalog: the benchmark uses it.
func TakeUncatalogued(ctx context.Context, o TakeOptions) (Backup, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o.Type = cmp.Or(o.Type, TypeBasebackup)
	own, err := serverOwner()
	if err != nil {
		return Backup{}, err
	}
	started := now().UTC()
	b := Backup{
		ID:      o.Site + "-" + started.Format("20060102T150405Z"),
		Type:    o.Type,
		Site:    o.Site,
		Started: started,
	}
	if b.Facts, err = readFacts(ctx, o.ConnString); err != nil {
		return Backup{}, fmt.Errorf("backup of %s: %w", o.Site, err)
	}
	switch o.Type {
	case TypeBasebackup:
		err = takeBasebackup(ctx, own, o, &b)
	case TypePgBackRest:
		if o.PgBackRest == nil {
			return Backup{}, fmt.Errorf("backup of %s: type pgbackrest but no pgbackrest section configured", o.Site)
		}
		err = takePgBackRest(ctx, own, o, &b)
	default:
		return Backup{}, fmt.Errorf("backup of %s: unknown type %q (want %s or %s)", o.Site, o.Type, TypeBasebackup, TypePgBackRest)
	}
	if err != nil {
		return Backup{}, err
	}
	if b.Time.IsZero() {
		b.Time = now().UTC()
	}
	log.Info("backup taken", "id", b.ID, "type", b.Type, "site", b.Site, "bytes", b.Size, "start_lsn", b.StartLSN, "end_lsn", b.EndLSN)
	return b, nil
}

func readFacts(ctx context.Context, conn string) (Facts, error) {
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		return Facts{}, fmt.Errorf("registry facts: connect: %w", err)
	}
	defer closeConn(ctx, c)
	n, err := registry.Count(ctx, c)
	if err != nil {
		return Facts{}, fmt.Errorf("registry facts: %w", err)
	}
	f := Facts{Domains: n.Domains, Delegations: n.Delegations, Hosts: n.Hosts, DS: n.DS, MaxJournalID: n.JournalMax}
	if err := c.QueryRow(ctx, `SELECT count(*) FROM journal WHERE id <= $1`, f.MaxJournalID).Scan(&f.JournalRows); err != nil {
		return Facts{}, fmt.Errorf("registry facts: journal rows: %w", err)
	}
	return f, nil
}

func closeConn(ctx context.Context, c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx) // a failed goodbye changes nothing
}

// takeBasebackup runs pg_basebackup in plain format: pg_verifybackup (15)
// verifies only plain backups, and a plain copy restores with one cp.
// -X stream puts the WAL of the copy into the backup, so it is
// self-consistent without the archive; the archive is for PITR beyond it.
func takeBasebackup(ctx context.Context, own owner, o TakeOptions, b *Backup) error {
	parent := filepath.Join(o.Dir, o.Site)
	if err := own.mkdirOwned(parent); err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.Path = filepath.Join(parent, b.ID)
	if _, err := own.run(ctx, parent, filepath.Join(o.BinDir, "pg_basebackup"),
		"-D", b.Path, "-d", o.ConnString, "-Fp", "-X", "stream", "-c", "fast",
		"--no-password", "-l", "regdr "+b.ID); err != nil {
		_ = os.RemoveAll(b.Path) // a half copy must not look like a backup
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.Time = time.Now().UTC()
	sum, err := fileSHA256(filepath.Join(b.Path, "backup_manifest"))
	if err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.ManifestSHA256 = sum
	if err := readManifestWAL(filepath.Join(b.Path, "backup_manifest"), b); err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	if b.StartWAL, err = startWALFile(filepath.Join(b.Path, "backup_label")); err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.Size, err = treeSize(b.Path)
	if err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readManifestWAL takes the timeline and LSN range from backup_manifest's
// WAL-Ranges.
func readManifestWAL(path string, b *Backup) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var m struct {
		WALRanges []struct {
			Timeline int    `json:"Timeline"`
			StartLSN string `json:"Start-LSN"`
			EndLSN   string `json:"End-LSN"`
		} `json:"WAL-Ranges"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if len(m.WALRanges) == 0 {
		return fmt.Errorf("%s has no WAL-Ranges", path)
	}
	b.Timeline = m.WALRanges[0].Timeline
	b.StartLSN = m.WALRanges[0].StartLSN
	b.EndLSN = m.WALRanges[len(m.WALRanges)-1].EndLSN
	return nil
}

// startWALFile reads "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)".
func startWALFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "START WAL LOCATION:") {
			continue
		}
		_, rest, ok := strings.Cut(line, "(file ")
		if !ok {
			break
		}
		name := strings.TrimSuffix(strings.TrimSpace(rest), ")")
		if !isSegmentName(name) {
			break
		}
		return name, nil
	}
	return "", fmt.Errorf("%s: no START WAL LOCATION with a segment file name", path)
}

func treeSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", root, err)
	}
	return n, nil
}

// pgbrInfo is the part of `pgbackrest info --output=json` Take reads.
type pgbrInfo struct {
	Name   string `json:"name"`
	Backup []struct {
		Label   string `json:"label"`
		Type    string `json:"type"`
		Archive struct {
			Start string `json:"start"`
			Stop  string `json:"stop"`
		} `json:"archive"`
		LSN struct {
			Start string `json:"start"`
			Stop  string `json:"stop"`
		} `json:"lsn"`
		Timestamp struct {
			Start int64 `json:"start"`
			Stop  int64 `json:"stop"`
		} `json:"timestamp"`
		Info struct {
			Size       int64 `json:"size"`
			Repository struct {
				Size int64 `json:"size"`
			} `json:"repository"`
		} `json:"info"`
	} `json:"backup"`
}

func takePgBackRest(ctx context.Context, own owner, o TakeOptions, b *Backup) error {
	p := o.PgBackRest
	b.Stanza = p.Stanza
	// stanza-create is idempotent: it checks an existing stanza against
	// the database and succeeds if they agree.
	if _, err := own.run(ctx, "/", "pgbackrest", p.args("stanza-create")...); err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	if _, err := own.run(ctx, "/", "pgbackrest", p.args("backup", "--type=full", "--start-fast")...); err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.Time = time.Now().UTC()
	out, err := own.run(ctx, "/", "pgbackrest", p.args("info", "--output=json")...)
	if err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	var infos []pgbrInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		return fmt.Errorf("backup %s: parse pgbackrest info: %w", b.ID, err)
	}
	if len(infos) != 1 || len(infos[0].Backup) == 0 {
		return fmt.Errorf("backup %s: pgbackrest info lists no backup for stanza %s", b.ID, p.Stanza)
	}
	last := infos[0].Backup[len(infos[0].Backup)-1]
	b.Label = last.Label
	b.StartLSN, b.EndLSN = last.LSN.Start, last.LSN.Stop
	b.StartWAL = last.Archive.Start
	if len(b.StartWAL) >= 8 {
		if tl, err := strconv.ParseInt(b.StartWAL[:8], 16, 32); err == nil {
			b.Timeline = int(tl)
		}
	}
	b.Size = last.Info.Repository.Size
	if p.RepoPath != "" {
		sum, err := fileSHA256(filepath.Join(p.RepoPath, "backup", p.Stanza, last.Label, "backup.manifest"))
		if err != nil {
			return fmt.Errorf("backup %s: %w", b.ID, err)
		}
		b.ManifestSHA256 = sum
	}
	return nil
}
