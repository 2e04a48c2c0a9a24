package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Backup describes the backups regdr takes and proves restorable
// (issue 6; RIPE NCC 2012 found mid-outage that its backups did not exist).
// The schedule of the restore test is schedules.backup_verify.
//
// Every field is optional; Settings fills the defaults.
type Backup struct {
	// Dir is the root of the backup catalog's files: base backups of site
	// S go to <dir>/<S>/<id>. Default "backup", next to the config file.
	// In production it is storage both sites can read (the verify site
	// restores what the other site took).
	Dir string `yaml:"dir,omitempty"`
	// WALArchiveDir is where the primary's archive_command copies WAL
	// segments; restore_command reads them for point-in-time recovery.
	// Default <dir>/wal.
	WALArchiveDir string `yaml:"wal_archive_dir,omitempty"`
	// PgBackRest, when set, lets `backup take --type pgbackrest` and the
	// verifier use a pgBackRest repository.
	PgBackRest *PgBackRest `yaml:"pgbackrest,omitempty"`
	// VerifySite is the site that runs the restore test. Default "": the
	// standby at the time (the active site's disks and CPU serve the
	// registry; a restore test must not compete with it).
	VerifySite string `yaml:"verify_site,omitempty"`
	// MaxAge is how old the last passed restore test may be before the
	// alert fires. Default 26h: a daily schedule plus two hours of slack
	// for a long run.
	MaxAge Duration `yaml:"max_age,omitempty"`
	// RowTolerancePercent is how far the restored row counts may be from
	// what the catalog recorded at backup time. Default 0: a restore to the
	// backup's own instant must reproduce it exactly; raise it only for
	// point-in-time restores to other instants.
	RowTolerancePercent *float64 `yaml:"row_tolerance_percent,omitempty"`
	// Zone is the origin rebuilt from the restored registry and compared
	// with the zone version published at backup time. Default: the first
	// zone.
	Zone string `yaml:"zone,omitempty"`
	// Assertions are extra SQL checks run on the restored registry.
	Assertions []BackupAssertion `yaml:"assertions,omitempty"`
	// ScratchDir is where restores are made (and removed afterwards).
	// Default <dir>/scratch. It needs room for one whole database.
	ScratchDir string `yaml:"scratch_dir,omitempty"`
}

// PgBackRest names a pgBackRest stanza and its own configuration file
// (never /etc/pgbackrest.conf: the lab and tests must not touch the host's).
type PgBackRest struct {
	Stanza     string `yaml:"stanza"`
	ConfigFile string `yaml:"config_file"`
	// RepoPath is repo1-path; it is written in ConfigFile too, and named
	// here so `regdr backup list` can show where backups live.
	RepoPath string `yaml:"repo_path,omitempty"`
}

// BackupAssertion is one SQL check: SQL returns one row with one value,
// compared with Expect: "<op> <number>" (op one of >=, <=, >, <, =, ==,
// !=) or, without an operator, the exact text of the value.
type BackupAssertion struct {
	Name   string `yaml:"name"`
	SQL    string `yaml:"sql"`
	Expect string `yaml:"expect"`
}

// DefaultBackupMaxAge is Backup.MaxAge when unset.
const DefaultBackupMaxAge = 26 * time.Hour

// BackupSettings is the backup section with every default filled and every
// path resolved against the config file. A config without the section gets
// the defaults.
func (c *Config) BackupSettings() Backup {
	var b Backup
	if c.Backup != nil {
		b = *c.Backup
		b.Assertions = append([]BackupAssertion(nil), c.Backup.Assertions...)
		if c.Backup.PgBackRest != nil {
			p := *c.Backup.PgBackRest
			b.PgBackRest = &p
		}
	}
	if b.Dir == "" {
		b.Dir = "backup"
	}
	b.Dir = c.Resolve(b.Dir)
	if b.WALArchiveDir == "" {
		b.WALArchiveDir = filepath.Join(b.Dir, "wal")
	}
	b.WALArchiveDir = c.Resolve(b.WALArchiveDir)
	if b.ScratchDir == "" {
		b.ScratchDir = filepath.Join(b.Dir, "scratch")
	}
	b.ScratchDir = c.Resolve(b.ScratchDir)
	if b.PgBackRest != nil {
		b.PgBackRest.ConfigFile = c.Resolve(b.PgBackRest.ConfigFile)
		if b.PgBackRest.RepoPath != "" {
			b.PgBackRest.RepoPath = c.Resolve(b.PgBackRest.RepoPath)
		}
	}
	if b.MaxAge.Duration == 0 {
		b.MaxAge.Duration = DefaultBackupMaxAge
	}
	if b.RowTolerancePercent == nil {
		zero := 0.0
		b.RowTolerancePercent = &zero
	}
	if b.Zone == "" && len(c.Zones) > 0 {
		b.Zone = c.Zones[0].Origin
	}
	return b
}

// ParseExpect splits an assertion's expect into an operator and a number;
// op is "" for an exact text match (then the text is returned as want).
func ParseExpect(expect string) (op string, num float64, want string, err error) {
	s := strings.TrimSpace(expect)
	for _, o := range []string{">=", "<=", "==", "!=", ">", "<", "="} {
		if rest, ok := strings.CutPrefix(s, o); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return "", 0, "", fmt.Errorf("expect %q: %q is not a number", expect, strings.TrimSpace(rest))
			}
			if o == "==" {
				o = "="
			}
			return o, n, "", nil
		}
	}
	return "", 0, s, nil
}

func (c *Config) validateBackup(v *validator) {
	b := c.Backup
	if b == nil {
		return
	}
	if b.VerifySite != "" {
		s, ok := c.Site(b.VerifySite)
		switch {
		case !ok:
			v.add("backup.verify_site", "no site named %q", b.VerifySite)
		case s.Witness:
			v.add("backup.verify_site", "site %q is the witness, which has no database to restore with", b.VerifySite)
		}
	}
	if b.MaxAge.Duration < 0 {
		v.add("backup.max_age", "duration must be positive, got %s", formatDuration(b.MaxAge.Duration))
	}
	if t := b.RowTolerancePercent; t != nil && (*t < 0 || *t > 100) {
		v.add("backup.row_tolerance_percent", "%v is not a percentage (0-100)", *t)
	}
	if b.Zone != "" {
		found := false
		for _, z := range c.Zones {
			if strings.EqualFold(strings.TrimSuffix(z.Origin, "."), strings.TrimSuffix(b.Zone, ".")) {
				found = true
			}
		}
		if !found {
			v.add("backup.zone", "zone %q is not in zones", b.Zone)
		}
	}
	if p := b.PgBackRest; p != nil {
		if v.require("backup.pgbackrest.stanza", p.Stanza) && !isSiteName(p.Stanza) {
			v.add("backup.pgbackrest.stanza", "stanza %q may hold only letters, digits, '-' and '_'", p.Stanza)
		}
		v.require("backup.pgbackrest.config_file", p.ConfigFile)
	}
	names := map[string]string{}
	for i, a := range b.Assertions {
		p := fmt.Sprintf("backup.assertions[%d]", i)
		if v.require(p+".name", a.Name) {
			v.unique(names, "assertion name", a.Name, a.Name, p+".name")
		}
		v.require(p+".sql", a.SQL)
		if v.require(p+".expect", a.Expect) {
			if _, _, _, err := ParseExpect(a.Expect); err != nil {
				v.add(p+".expect", "%v", err)
			}
		}
	}
}
