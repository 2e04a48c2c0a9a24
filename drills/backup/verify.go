package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/replicator/zonestore"
)

// Phase names, in the order Verify runs them.
const (
	PhaseIntegrity = "integrity"
	PhaseRestore   = "restore"
	PhaseStart     = "start"
	PhaseAmcheck   = "amcheck"
	PhaseSemantic  = "semantic"
	PhaseZone      = "zone"
	PhaseKeys      = "keys"
	PhaseTeardown  = "teardown"
)

// Phases lists the phase names in order.
var Phases = []string{PhaseIntegrity, PhaseRestore, PhaseStart, PhaseAmcheck, PhaseSemantic, PhaseZone, PhaseKeys, PhaseTeardown}

// Phase statuses. Unknown is never a pass: it means the check could not
// be made (the keys phase before key bundles exist); Skipped means an
// earlier phase failed and this one had nothing to run on.
const (
	StatusPassed  = "passed"
	StatusFailed  = "failed"
	StatusUnknown = "unknown"
	StatusSkipped = "skipped"
)

// PhaseResult is one phase of a restore test.
type PhaseResult struct {
	Name     string        `json:"name"`
	Status   string        `json:"status"`
	Duration time.Duration `json:"duration_ns"`
	Detail   string        `json:"detail,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// Verification is one restore test of one backup.
type Verification struct {
	BackupID   string `json:"backup_id"`
	BackupType string `json:"backup_type"`
	// Site is the site that ran the test.
	Site     string    `json:"site"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// TargetTime is the PITR target, zero for "the backup itself".
	TargetTime time.Time `json:"target_time,omitzero"`
	// RestorePoint is the instant the restored database represents: the
	// target time, or the backup's time.
	RestorePoint time.Time     `json:"restore_point"`
	Result       string        `json:"result"` // passed or failed
	Phases       []PhaseResult `json:"phases"`
}

// Passed reports whether no phase failed (unknown phases are listed by
// Unknown and shown with the result, but do not fail it).
func (v Verification) Passed() bool { return v.Result == StatusPassed }

// Failure is "<phase>: <error>" of the first failed phase, "" if none.
func (v Verification) Failure() string {
	for _, p := range v.Phases {
		if p.Status == StatusFailed {
			return p.Name + ": " + p.Error
		}
	}
	return ""
}

// Unknown lists the phases whose outcome is unknown.
func (v Verification) Unknown() []string {
	var out []string
	for _, p := range v.Phases {
		if p.Status == StatusUnknown {
			out = append(out, p.Name)
		}
	}
	return out
}

// Event reports progress: a phase starting (Done false) or ending.
type Event struct {
	Phase  string
	Index  int // 0-based position in Phases
	Done   bool
	Result PhaseResult
}

// KeyCheck opens the key bundles of instant at and checks their keys
// against the DNSKEYs of the zone published then. Verify reports the keys
// phase unknown when none is given.
type KeyCheck func(ctx context.Context, at time.Time) (detail string, err error)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Backup Backup
	// Site is the verifying site (for the report and the zone store).
	Site string
	// TargetTime, if set, restores to that instant with WAL from the
	// archive instead of to the backup's own end.
	TargetTime time.Time
	BinDir     string
	// ScratchDir is where the scratch instance lives; Verify makes a
	// fresh directory below it and removes it at the end.
	ScratchDir    string
	WALArchiveDir string
	PgBackRest    *PgBackRest
	// RowTolerancePercent: restored counts may differ from the catalog's
	// facts by this percentage.
	RowTolerancePercent float64
	Assertions          []config.BackupAssertion
	// Zone is the origin rebuilt from the restored registry; ZoneStore
	// is the verifying site's zone store.
	Zone      string
	ZoneStore *zonestore.Store
	// PublishedAt answers, from the deployment's zone index in etcd,
	// which version was published at an instant (by whichever site was
	// active then); nil falls back to the verifying site's own store.
	PublishedAt func(ctx context.Context, zone string, t time.Time) (store.PublishedVersion, bool, error)
	Keys        KeyCheck
	// Timeout bounds the whole test except teardown; default 30m.
	Timeout  time.Duration
	Progress func(Event)
	Logger   *slog.Logger
	Now      func() time.Time
}

// teardownTimeout bounds stopping the scratch server and removing its
// directory, on a context of its own.
const teardownTimeout = 2 * time.Minute

// Verify restores o.Backup into a scratch PostgreSQL and proves it: the
// phases in Phases order. It always tears down what it started, also when
// a phase fails or ctx is cancelled, and always returns a Verification;
// a non-nil error means the options were unusable (nothing was run).
func Verify(ctx context.Context, o VerifyOptions) (Verification, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := o.Backup
	switch {
	case b.ID == "":
		return Verification{}, errors.New("verify backup: no backup")
	case o.ScratchDir == "":
		return Verification{}, fmt.Errorf("verify backup %s: no scratch directory", b.ID)
	case b.Type == TypePgBackRest && o.PgBackRest == nil:
		return Verification{}, fmt.Errorf("verify backup %s: pgBackRest backup but no pgbackrest section configured", b.ID)
	case !o.TargetTime.IsZero() && o.TargetTime.Before(b.Time):
		return Verification{}, fmt.Errorf("verify backup %s: target time %s is before the backup finished (%s)", b.ID,
			o.TargetTime.UTC().Format(time.RFC3339), b.Time.Format(time.RFC3339))
	}
	own, err := serverOwner()
	if err != nil {
		return Verification{}, err
	}
	v := Verification{
		BackupID: b.ID, BackupType: b.Type, Site: o.Site,
		Started: now().UTC(), TargetTime: o.TargetTime.UTC(), RestorePoint: b.Time,
	}
	if !o.TargetTime.IsZero() {
		v.RestorePoint = o.TargetTime.UTC()
	}
	r := &run{o: o, own: own, log: log, v: &v}
	wctx, cancel := context.WithTimeout(ctx, cmp.Or(o.Timeout, 30*time.Minute))
	defer cancel()

	ok := r.phase(wctx, PhaseIntegrity, r.integrity) &&
		r.phase(wctx, PhaseRestore, r.restore) &&
		r.phase(wctx, PhaseStart, r.start)
	if ok {
		// Independent checks of the open database: run all, report all.
		r.phase(wctx, PhaseAmcheck, r.amcheck)
		r.phase(wctx, PhaseSemantic, r.semantic)
		r.phase(wctx, PhaseZone, r.zone)
		r.phase(wctx, PhaseKeys, r.keys)
	}
	tctx, tcancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	defer tcancel()
	r.phase(tctx, PhaseTeardown, r.teardown)
	r.fillSkipped()

	v.Result = StatusPassed
	for _, p := range v.Phases {
		if p.Status == StatusFailed {
			v.Result = StatusFailed
		}
	}
	v.Finished = now().UTC()
	log.Info("backup verified", "backup", b.ID, "result", v.Result, "failure", v.Failure(), "unknown", v.Unknown())
	return v, nil
}

// run is one Verify in progress.
type run struct {
	o   VerifyOptions
	own owner
	log *slog.Logger
	v   *Verification
	sc  *scratch
}

// errUnknown marks a phase whose outcome cannot be established.
type errUnknown struct{ reason string }

func (e errUnknown) Error() string { return e.reason }

// Unknown is the error a check returns when it cannot establish its
// outcome (nothing to check against); Verify records the phase as
// unknown, never as passed.
func Unknown(reason string) error { return errUnknown{reason} }

// IsUnknown reports whether err is (or wraps) an Unknown.
func IsUnknown(err error) bool {
	var u errUnknown
	return errors.As(err, &u)
}

// phase runs f as phase name, records it and reports whether it passed.
func (r *run) phase(ctx context.Context, name string, f func(ctx context.Context) (string, error)) bool {
	idx := indexOf(name)
	if r.o.Progress != nil {
		r.o.Progress(Event{Phase: name, Index: idx})
	}
	start := time.Now()
	detail, err := f(ctx)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	p := PhaseResult{Name: name, Status: StatusPassed, Duration: time.Since(start), Detail: detail}
	var unk errUnknown
	switch {
	case errors.As(err, &unk):
		p.Status, p.Detail = StatusUnknown, unk.reason
	case err != nil:
		p.Status, p.Error = StatusFailed, err.Error()
	}
	r.v.Phases = append(r.v.Phases, p)
	r.log.Debug("verify phase", "backup", r.v.BackupID, "phase", name, "status", p.Status, "duration", p.Duration, "err", p.Error)
	if r.o.Progress != nil {
		r.o.Progress(Event{Phase: name, Index: idx, Done: true, Result: p})
	}
	return p.Status != StatusFailed
}

// fillSkipped puts the phases in order, recording the ones never run
// (an earlier gating phase failed) as skipped.
func (r *run) fillSkipped() {
	byName := map[string]PhaseResult{}
	for _, p := range r.v.Phases {
		byName[p.Name] = p
	}
	out := make([]PhaseResult, 0, len(Phases))
	for i, name := range Phases {
		p, ok := byName[name]
		if !ok {
			p = PhaseResult{Name: name, Status: StatusSkipped}
			if r.o.Progress != nil {
				r.o.Progress(Event{Phase: name, Index: i, Done: true, Result: p})
			}
		}
		out = append(out, p)
	}
	r.v.Phases = out
}

func indexOf(name string) int {
	for i, p := range Phases {
		if p == name {
			return i
		}
	}
	return len(Phases)
}

func (r *run) integrity(ctx context.Context) (string, error) {
	b := r.o.Backup
	switch b.Type {
	case TypeBasebackup:
		manifest := filepath.Join(b.Path, "backup_manifest")
		sum, err := fileSHA256(manifest)
		if err != nil {
			return "", fmt.Errorf("backup %s: %w", b.ID, err)
		}
		if sum != b.ManifestSHA256 {
			return "", fmt.Errorf("backup %s: backup_manifest has SHA-256 %s, the catalog recorded %s: the backup was replaced or damaged", b.ID, sum, b.ManifestSHA256)
		}
		// pg_verifybackup checks every file's size and checksum against
		// the manifest and parses the WAL the backup needs.
		if _, err := r.own.run(ctx, b.Path, filepath.Join(r.o.BinDir, "pg_verifybackup"), b.Path); err != nil {
			return "", err
		}
		return "pg_verifybackup: every file and the WAL match backup_manifest", nil
	case TypePgBackRest:
		p := r.o.PgBackRest
		if b.ManifestSHA256 != "" && p.RepoPath != "" {
			sum, err := fileSHA256(filepath.Join(p.RepoPath, "backup", p.Stanza, b.Label, "backup.manifest"))
			if err != nil {
				return "", fmt.Errorf("backup %s: %w", b.ID, err)
			}
			if sum != b.ManifestSHA256 {
				return "", fmt.Errorf("backup %s: pgBackRest manifest has SHA-256 %s, the catalog recorded %s", b.ID, sum, b.ManifestSHA256)
			}
		}
		out, err := r.own.run(ctx, "/", "pgbackrest", p.args("verify", "--set="+b.Label, "--output=text")...)
		if err != nil {
			return "", err
		}
		// verify exits 0 whatever it finds; the verdict is in its text
		// (nothing when all is well, "status: error" with the invalid
		// files otherwise).
		text := strings.TrimSpace(string(out))
		if strings.Contains(text, "status: error") || strings.Contains(text, "status: invalid") {
			return "", fmt.Errorf("pgbackrest verify of %s: %s", b.Label, strings.Join(strings.Fields(text), " "))
		}
		return "pgbackrest verify: repository checksums match", nil
	}
	return "", fmt.Errorf("backup %s: unknown type %q", b.ID, b.Type)
}

// restoreLines are the recovery settings for a restore from the WAL
// archive. The restore_command names the segment it could not find, so a
// failed PITR can say which one.
func (r *run) restoreLines() string {
	cmd := "false"
	if dir := r.o.WALArchiveDir; dir != "" {
		cmd = fmt.Sprintf(`f="%s/%%f"; if [ -f "$f" ]; then cp "$f" "%%p"; else case "%%f" in *.history|*.partial|*.backup) ;; *) echo "regdr: WAL segment %%f not in archive %s" >&2 ;; esac; exit 1; fi`, dir, dir)
	}
	lines := fmt.Sprintf("restore_command = '%s'\nrecovery_target_action = 'promote'\n", strings.ReplaceAll(cmd, "'", "''"))
	if r.o.TargetTime.IsZero() {
		return lines + "recovery_target = 'immediate'\n"
	}
	return lines + fmt.Sprintf("recovery_target_time = '%s'\nrecovery_target_inclusive = on\n", r.o.TargetTime.UTC().Format("2006-01-02 15:04:05.999999+00"))
}

func (r *run) restore(ctx context.Context) (string, error) {
	b := r.o.Backup
	name := fmt.Sprintf("%s-%d", b.ID, time.Now().UnixNano())
	sc, err := newScratch(r.own, r.o.BinDir, r.o.ScratchDir, name)
	if sc != nil {
		r.sc = sc
	}
	if err != nil {
		// newScratch may have created directories: teardown needs a
		// handle on them.
		r.sc = &scratch{own: r.own, binDir: r.o.BinDir, root: filepath.Join(r.o.ScratchDir, name), data: filepath.Join(r.o.ScratchDir, name, "data")}
		return "", err
	}
	switch b.Type {
	case TypeBasebackup:
		// cp -a keeps modes; the copy is then given to postgres.
		if _, err := r.own.run(ctx, "/", "cp", "-a", b.Path+"/.", sc.data); err != nil {
			return "", fmt.Errorf("copy backup %s: %w", b.ID, err)
		}
		if err := os.Remove(filepath.Join(sc.data, "backup_manifest")); err != nil {
			return "", fmt.Errorf("restore %s: %w", b.ID, err)
		}
		if err := sc.configure(r.restoreLines()); err != nil {
			return "", fmt.Errorf("restore %s: %w", b.ID, err)
		}
	case TypePgBackRest:
		p := r.o.PgBackRest
		args := []string{"--pg1-path=" + sc.data, "--set=" + b.Label, "--target-action=promote"}
		if r.o.TargetTime.IsZero() {
			args = append(args, "--type=immediate")
		} else {
			args = append(args, "--type=time", "--target="+r.o.TargetTime.UTC().Format("2006-01-02 15:04:05.999999+00"))
		}
		if _, err := r.own.run(ctx, "/", "pgbackrest", p.args("restore", args...)...); err != nil {
			return "", fmt.Errorf("restore %s: %w", b.ID, err)
		}
		// pgBackRest wrote restore_command and the target.
		if err := sc.configure(""); err != nil {
			return "", fmt.Errorf("restore %s: %w", b.ID, err)
		}
	}
	size, _ := treeSize(sc.data)
	return fmt.Sprintf("restored %d MB into %s for 127.0.0.1:%d", size>>20, sc.root, sc.port), nil
}

func (r *run) start(ctx context.Context) (string, error) {
	err := r.sc.start(ctx)
	if err == nil {
		err = r.sc.waitOpen(ctx)
	}
	if err != nil {
		return "", r.explainRecoveryFailure(err)
	}
	return fmt.Sprintf("consistent and open on 127.0.0.1:%d", r.sc.port), nil
}

// explainRecoveryFailure names the missing WAL segment when recovery
// stopped short of its target.
func (r *run) explainRecoveryFailure(err error) error {
	b := r.o.Backup
	seg := lastRestoreMiss(r.sc.logText())
	if r.o.WALArchiveDir != "" && b.StartWAL != "" {
		if gap, _, gerr := archiveGap(r.o.WALArchiveDir, b.StartWAL); gerr == nil && gap != "" {
			seg = gap
		}
	}
	if seg != "" {
		return fmt.Errorf("recovery to %s failed: WAL segment %s missing from archive %s: %w",
			r.v.RestorePoint.Format(time.RFC3339), seg, r.o.WALArchiveDir, err)
	}
	return err
}

func (r *run) amcheck(ctx context.Context) (string, error) {
	out, err := r.own.run(ctx, "/", filepath.Join(r.o.BinDir, "pg_amcheck"),
		"-h", "127.0.0.1", "-p", fmt.Sprint(r.sc.port), "-U", "postgres", "--all", "--install-missing", "--no-password")
	if err != nil {
		return "", err
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		return "", fmt.Errorf("pg_amcheck reported: %s", lastLines(s, 8))
	}
	return "heap and btree indexes of every database: no corruption", nil
}

func (r *run) keys(ctx context.Context) (string, error) {
	if r.o.Keys == nil {
		return "", errUnknown{"keys not built: no key-bundle check is wired into backup verify yet"}
	}
	return r.o.Keys(ctx, r.v.RestorePoint)
}

func (r *run) teardown(ctx context.Context) (string, error) {
	if r.sc == nil {
		return "nothing was started", nil
	}
	if err := r.sc.teardown(ctx); err != nil {
		return "", err
	}
	return "scratch server stopped, " + r.sc.root + " removed", nil
}
