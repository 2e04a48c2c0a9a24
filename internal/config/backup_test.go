package config

import (
	"path/filepath"
	"testing"
	"time"
)

func TestBackupSettingsDefaults(t *testing.T) {
	ten := 10.0
	tests := []struct {
		name string
		in   *Backup
		want func(t *testing.T, b Backup)
	}{
		{"no section", nil, func(t *testing.T, b Backup) {
			if b.Dir != "/etc/regdr/backup" || b.WALArchiveDir != "/etc/regdr/backup/wal" || b.ScratchDir != "/etc/regdr/backup/scratch" {
				t.Errorf("dirs %q %q %q, want backup/, backup/wal, backup/scratch next to the config", b.Dir, b.WALArchiveDir, b.ScratchDir)
			}
			if b.MaxAge.Duration != 26*time.Hour || *b.RowTolerancePercent != 0 || b.Zone != "test." || b.VerifySite != "" {
				t.Errorf("defaults %+v", b)
			}
		}},
		{"explicit", &Backup{Dir: "/srv/b", WALArchiveDir: "wal", MaxAge: Duration{time.Hour}, RowTolerancePercent: &ten,
			PgBackRest: &PgBackRest{Stanza: "s", ConfigFile: "pgbr.conf"}}, func(t *testing.T, b Backup) {
			if b.Dir != "/srv/b" || b.WALArchiveDir != "/etc/regdr/wal" || b.ScratchDir != "/srv/b/scratch" {
				t.Errorf("dirs %q %q %q", b.Dir, b.WALArchiveDir, b.ScratchDir)
			}
			if b.MaxAge.Duration != time.Hour || *b.RowTolerancePercent != 10 || b.PgBackRest.ConfigFile != "/etc/regdr/pgbr.conf" {
				t.Errorf("settings %+v", b)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{path: filepath.Join("/etc/regdr", "regdr.yaml"), Zones: []Zone{{Origin: "test."}}, Backup: tt.in}
			tt.want(t, c.BackupSettings())
			if tt.in != nil && tt.in.PgBackRest != nil && tt.in.PgBackRest.ConfigFile != "pgbr.conf" {
				t.Error("BackupSettings changed the config it was called on")
			}
		})
	}
}

func TestParseExpect(t *testing.T) {
	tests := []struct {
		in, op, want string
		num          float64
		bad          bool
	}{
		{in: ">= 1", op: ">=", num: 1},
		{in: "==5", op: "=", num: 5},
		{in: "!= 0", op: "!=", num: 0},
		{in: "< 2.5", op: "<", num: 2.5},
		{in: "active", want: "active"},
		{in: "> x", bad: true},
	}
	for _, tt := range tests {
		op, num, want, err := ParseExpect(tt.in)
		if (err != nil) != tt.bad || op != tt.op || num != tt.num || want != tt.want {
			t.Errorf("ParseExpect(%q) = %q %v %q %v", tt.in, op, num, want, err)
		}
	}
}
