package pglab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFindBinDir(t *testing.T) {
	all := []string{"initdb", "postgres", "pg_ctl", "pg_basebackup"}
	tests := []struct {
		name    string
		trees   map[string][]string // major -> executables present
		want    string              // major whose bin is chosen; "" = error
		wantErr string
	}{
		{name: "newest complete wins", trees: map[string][]string{"14": all, "15": all, "16": {"initdb", "postgres", "pg_ctl"}}, want: "15"},
		{name: "numeric not lexical order", trees: map[string][]string{"9": all, "13": all}, want: "13"},
		{name: "client only", trees: map[string][]string{"15": {"pg_basebackup", "pg_ctl"}},
			wantErr: "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install them with: apt-get install -y postgresql-15"},
		{name: "nothing installed", trees: map[string][]string{},
			wantErr: "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install them with: apt-get install -y postgresql-15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for major, bins := range tt.trees {
				bin := filepath.Join(root, major, "bin")
				if err := os.MkdirAll(bin, 0o755); err != nil {
					t.Fatal(err)
				}
				for _, b := range bins {
					if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			got, err := findBinDir(filepath.Join(root, "*", "bin"))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, tt.want, "bin"); got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		})
	}
}

func TestFindBinDirOnThisMachine(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
}

func TestOptionsFill(t *testing.T) {
	bin := t.TempDir()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "defaults", opts: Options{Name: "tokyo", Dir: "/tmp/x", BinDir: bin}},
		{name: "ipv6 loopback", opts: Options{Name: "osaka", Dir: "/tmp/x", Host: "::1", Port: 5999, BinDir: bin}},
		{name: "other loopback", opts: Options{Name: "osaka", Dir: "/tmp/x", Host: "127.0.0.2", Port: 5999, BinDir: bin}},
		{name: "upper case name", opts: Options{Name: "Tokyo", Dir: "/tmp/x", BinDir: bin}, wantErr: "replication slot name"},
		{name: "empty name", opts: Options{Dir: "/tmp/x", BinDir: bin}, wantErr: "cluster name"},
		{name: "bad standby", opts: Options{Name: "tokyo", Dir: "/tmp/x", Standbys: []string{"os-aka"}, BinDir: bin}, wantErr: `standby name "os-aka"`},
		{name: "no dir", opts: Options{Name: "tokyo", BinDir: bin}, wantErr: "no directory"},
		{name: "public address", opts: Options{Name: "tokyo", Dir: "/tmp/x", Host: "192.0.2.1", BinDir: bin}, wantErr: "not a loopback"},
		{name: "host name", opts: Options{Name: "tokyo", Dir: "/tmp/x", Host: "localhost", BinDir: bin}, wantErr: "not a loopback"},
		{name: "port range", opts: Options{Name: "tokyo", Dir: "/tmp/x", Port: 70000, BinDir: bin}, wantErr: "out of range"},
		{name: "socket path too long", opts: Options{Name: "tokyo", Dir: "/tmp/" + strings.Repeat("d", 100), BinDir: bin}, wantErr: "too long for a unix socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			err := o.fill()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Port == 0 || o.Host == "" {
				t.Fatalf("defaults not filled: %+v", o)
			}
			c := o.cluster()
			if c.DataDir != filepath.Join(o.Dir, "data") || c.LogFile != filepath.Join(o.Dir, "postgres.log") {
				t.Fatalf("layout: %+v", c)
			}
		})
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Fatal("this process reported dead")
	}
	// A child that exited but was not waited for is a zombie: its pid
	// still answers kill(0), yet it is not running.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("exited child %d still reported alive", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
		t.Fatalf("child %d should still exist as a zombie until waited: %v", pid, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Fatalf("reaped child %d reported alive", pid)
	}
}
