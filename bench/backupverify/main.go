// Command backupverify measures what proving a backup costs: a registry of
// -n domains, one full pgBackRest backup of it, then
//
//  1. a bare `pgbackrest restore` of that backup into an empty directory
//     (what any restore costs), and
//  2. `regdr backup verify` of the same backup: pgbackrest verify, the
//     restore, recovery to consistency, pg_amcheck, the semantic checks
//     and the zone rebuilt from the restored registry compared with the
//     published version, teardown.
//
// It prints the phase timings and the share of the verify beyond the bare
// restore, as Markdown rows for RESULTS.md.
//
//	go run ./bench/backupverify -n 1000000 -dir /tmp/bv
//
// Run as root (PostgreSQL and pgBackRest then run as user postgres) with
// postgresql-15 and pgbackrest installed; -dir must not exist.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/internal/zonegen"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonestore"
)

func main() {
	n := flag.Int("n", 100000, "domains in the registry")
	dir := flag.String("dir", "/tmp/regdr-backupverify", "work directory (must not exist; removed at the end unless -keep)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	if err := run(*n, *dir, *keep); err != nil {
		log.Fatal(err)
	}
}

func step(name string, start time.Time) time.Duration {
	d := time.Since(start)
	fmt.Fprintf(os.Stderr, "%-40s %8.1fs\n", name, d.Seconds())
	return d
}

func run(n int, dir string, keep bool) (err error) {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists; pick another -dir", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	pg, err := pglab.InitPrimary(ctx, pglab.Options{Name: "tokyo", Dir: filepath.Join(dir, "tokyo"), Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		pg.Stop(sctx, "immediate")
	}()
	root := filepath.Join(dir, "backup")
	p := &backup.PgBackRest{Stanza: "registry", ConfigFile: filepath.Join(root, "pgbackrest", "pgbackrest.conf"), RepoPath: filepath.Join(root, "pgbackrest", "repo")}
	wal := filepath.Join(root, "wal")
	if err := backup.EnableArchiving(ctx, pg.ConnString("postgres"), wal, p); err != nil {
		return err
	}
	if err := pg.Stop(ctx, "fast"); err != nil {
		return err
	}
	if err := pg.Start(ctx); err != nil {
		return err
	}
	if err := backup.InitPgBackRest(ctx, p, pg.DataDir, pg.Port, pg.Dir); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, pg.ConnString("registry"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := registry.Apply(ctx, conn); err != nil {
		return err
	}
	t := time.Now()
	if err := registry.Populate(ctx, conn, "test", n); err != nil {
		return err
	}
	step(fmt.Sprintf("populate %d domains", n), t)

	// The published version the restored registry must match.
	t = time.Now()
	snap, err := zonegen.ReadSnapshot(ctx, conn, "test.")
	if err != nil {
		return err
	}
	rrs, err := zonegen.Build(snap, zonegen.Params{Origin: "test.", Serial: 1, ApexNS: []string{"a.nic.test."}})
	if err != nil {
		return err
	}
	z, err := zone.FromRecords("test.", rrs)
	if err != nil {
		return err
	}
	st, err := zonestore.Open(filepath.Join(dir, "zonestore"))
	if err != nil {
		return err
	}
	at := time.Now()
	if _, err := st.Put(z, zonestore.Manifest{AcceptedAt: at, AcceptedBy: "bench", Source: "file:test.zone"}); err != nil {
		return err
	}
	if err := st.MarkPublished("test.", 1, at); err != nil {
		return err
	}
	step("build + store the published zone", t)

	// The catalog lives in memory-less form here: Take needs one, so
	// this runs without etcd by taking the backup through a catalog-free
	// path: the same Take with a throw-away embedded etcd is not worth
	// the dependency for a benchmark.
	t = time.Now()
	b, err := takeNoCatalog(ctx, pg, p)
	if err != nil {
		return err
	}
	step("pgbackrest backup (full)", t)

	bin, err := pglab.FindBinDir()
	if err != nil {
		return err
	}
	// 1. bare restore.
	bare := filepath.Join(dir, "bare")
	if err := mkdirPostgres(bare); err != nil {
		return err
	}
	t = time.Now()
	if out, err := asPostgres(ctx, "pgbackrest", "--config="+p.ConfigFile, "--stanza="+p.Stanza, "--log-level-console=warn",
		"restore", "--pg1-path="+bare, "--set="+b.Label, "--type=immediate", "--target-action=promote"); err != nil {
		return fmt.Errorf("bare restore: %w: %s", err, out)
	}
	bareT := step("bare pgbackrest restore", t)
	os.RemoveAll(bare)

	// 2. regdr backup verify.
	t = time.Now()
	v, err := backup.Verify(ctx, backup.VerifyOptions{
		Backup: b, Site: "bench", BinDir: bin, ScratchDir: filepath.Join(root, "scratch"), WALArchiveDir: wal,
		PgBackRest: p, Zone: "test.", ZoneStore: st, Logger: log, Timeout: 2 * time.Hour,
	})
	if err != nil {
		return err
	}
	total := step("regdr backup verify", t)
	if !v.Passed() {
		return fmt.Errorf("verify failed: %s", v.Failure())
	}
	fmt.Printf("| domains | %d |\n", n)
	fmt.Printf("| bare `pgbackrest restore` | %.1f s |\n", bareT.Seconds())
	fmt.Printf("| `regdr backup verify` total | %.1f s |\n", total.Seconds())
	for _, ph := range v.Phases {
		fmt.Printf("| phase %s | %.1f s (%s) |\n", ph.Name, ph.Duration.Seconds(), ph.Status)
	}
	fmt.Printf("| share beyond the bare restore | %.0f %% (%.1f s) |\n", 100*(total-bareT).Seconds()/total.Seconds(), (total - bareT).Seconds())
	var restore time.Duration
	for _, ph := range v.Phases {
		if ph.Name == backup.PhaseRestore {
			restore = ph.Duration
		}
	}
	fmt.Printf("| share beyond verify's own restore phase | %.0f %% (%.1f s) |\n", 100*(total-restore).Seconds()/total.Seconds(), (total - restore).Seconds())
	return nil
}

// takeNoCatalog runs the pgBackRest part of backup.Take and fills the
// record Verify needs.
func takeNoCatalog(ctx context.Context, pg *pglab.Cluster, p *backup.PgBackRest) (backup.Backup, error) {
	return backup.TakeUncatalogued(ctx, backup.TakeOptions{Type: backup.TypePgBackRest, Site: "tokyo", ConnString: pg.ConnString("registry"), PgBackRest: p})
}

func mkdirPostgres(d string) error {
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(d, postgresUID(), postgresGID())
}

func asPostgres(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(postgresUID()), Gid: uint32(postgresGID())}}
	}
	return cmd.CombinedOutput()
}
