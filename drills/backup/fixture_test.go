package backup_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/drills/backup"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/etcdtest"
	"github.com/regdr/regdr/internal/pglab"
	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/registry"
	"github.com/regdr/regdr/internal/zonegen"
	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zonestore"
)

const origin = "test."

// fixture is a registry primary archiving its WAL, an etcd with the
// catalog and a zone store, all under the test's temp dir.
type fixture struct {
	t       *testing.T
	pg      *pglab.Cluster
	conn    *pgx.Conn
	cli     *clientv3.Client
	cat     *backup.Catalog
	store   *zonestore.Store
	dir     string // backup root
	wal     string
	scratch string
	pgbr    *backup.PgBackRest
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// newFixture builds the fixture with domains registered; withPgBackRest
// also creates a pgBackRest stanza the primary archives to.
func newFixture(t *testing.T, domains int, withPgBackRest bool) *fixture {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	f := &fixture{t: t, pg: pglabtest.Primary(t)}
	root := t.TempDir()
	f.dir = filepath.Join(root, "backup")
	f.wal = filepath.Join(f.dir, "wal")
	f.scratch = filepath.Join(f.dir, "scratch")
	if withPgBackRest {
		f.pgbr = &backup.PgBackRest{
			Stanza:     "registry",
			ConfigFile: filepath.Join(f.dir, "pgbackrest", "pgbackrest.conf"),
			RepoPath:   filepath.Join(f.dir, "pgbackrest", "repo"),
		}
	}
	if err := backup.EnableArchiving(ctx, f.pg.ConnString("postgres"), f.wal, f.pgbr); err != nil {
		t.Fatal(err)
	}
	if err := f.pg.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if err := f.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if f.pgbr != nil {
		if err := backup.InitPgBackRest(ctx, f.pgbr, f.pg.DataDir, f.pg.Port, f.pg.Dir); err != nil {
			t.Fatal(err)
		}
	}
	f.conn = pglabtest.Conn(t, f.pg, "registry")
	if err := registry.Apply(ctx, f.conn); err != nil {
		t.Fatal(err)
	}
	if err := registry.Populate(ctx, f.conn, "test", domains); err != nil {
		t.Fatal(err)
	}
	_, f.cli = etcdtest.Start(t)
	f.cat = backup.NewCatalog(f.cli, "/t")
	var err error
	if f.store, err = zonestore.Open(filepath.Join(root, "zonestore")); err != nil {
		t.Fatal(err)
	}
	return f
}

// publish builds the zone from the registry as it is now, stores it and
// marks it published at at, as the active site's agent does.
func (f *fixture) publish(serial uint32, at time.Time) *zone.Zone {
	f.t.Helper()
	ctx := ctxT(f.t, time.Minute)
	snap, err := zonegen.ReadSnapshot(ctx, f.conn, origin)
	if err != nil {
		f.t.Fatal(err)
	}
	rrs, err := zonegen.Build(snap, zonegen.Params{Origin: origin, Serial: serial, ApexNS: []string{"a.nic.test.", "b.nic.test."}})
	if err != nil {
		f.t.Fatal(err)
	}
	z, err := zone.FromRecords(origin, rrs)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.store.Put(z, zonestore.Manifest{AcceptedAt: at, AcceptedBy: "agent tokyo", Source: "file:test.zone"}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.MarkPublished(origin, serial, at); err != nil {
		f.t.Fatal(err)
	}
	return z
}

func (f *fixture) take(typ string) backup.Backup {
	f.t.Helper()
	bin, err := pglab.FindBinDir()
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := backup.Take(ctxT(f.t, 2*time.Minute), f.cat, backup.TakeOptions{
		Type: typ, Site: "tokyo", ConnString: f.pg.ConnString("registry"), Dir: f.dir,
		BinDir: bin, PgBackRest: f.pgbr, Logger: pglabtest.Logger(f.t),
	})
	if err != nil {
		f.t.Fatalf("take %s backup: %v", typ, err)
	}
	return b
}

func (f *fixture) verifyOptions(b backup.Backup) backup.VerifyOptions {
	bin, err := pglab.FindBinDir()
	if err != nil {
		f.t.Fatal(err)
	}
	return backup.VerifyOptions{
		Backup: b, Site: "osaka", BinDir: bin, ScratchDir: f.scratch, WALArchiveDir: f.wal,
		PgBackRest: f.pgbr, Zone: origin, ZoneStore: f.store, Logger: pglabtest.Logger(f.t),
		Timeout: 2 * time.Minute,
	}
}

func (f *fixture) verify(o backup.VerifyOptions) backup.Verification {
	f.t.Helper()
	v, err := backup.Verify(ctxT(f.t, 3*time.Minute), o)
	if err != nil {
		f.t.Fatalf("verify: %v", err)
	}
	for _, p := range v.Phases {
		f.t.Logf("phase %-9s %-7s %6.2fs %s%s", p.Name, p.Status, p.Duration.Seconds(), p.Detail, p.Error)
	}
	f.assertNothingLeft()
	return v
}

// assertNothingLeft: no scratch directory, no process running from one.
func (f *fixture) assertNothingLeft() {
	f.t.Helper()
	ents, err := os.ReadDir(f.scratch)
	if err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
	for _, e := range ents {
		f.t.Errorf("scratch directory left behind: %s", filepath.Join(f.scratch, e.Name()))
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.Contains(string(b), f.scratch) {
			f.t.Errorf("process left behind: %s: %q", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

func phase(v backup.Verification, name string) backup.PhaseResult {
	for _, p := range v.Phases {
		if p.Name == name {
			return p
		}
	}
	return backup.PhaseResult{}
}

func portFree(t *testing.T, port int) {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Errorf("port %d still taken after verify: %v", port, err)
		return
	}
	l.Close()
}

type configAssertion = config.BackupAssertion
