package bundle_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/zonesign"
	"github.com/regdr/regdr/keys/bundle"
	"github.com/regdr/regdr/keys/inventory"
)

// The child side of TestKillMidInstall: install the pairs of $SRC into
// $DST and stop dead at step $STEP, saying so on stdout.
func TestMain(m *testing.M) {
	if os.Getenv("REGDR_INSTALL_CHILD") == "1" {
		os.Exit(installChild())
	}
	os.Exit(m.Run())
}

func installChild() int {
	src, dst, stop := os.Getenv("SRC"), os.Getenv("DST"), os.Getenv("STEP")
	b := inventory.Dir{Path: src}
	ks, err := b.List(context.Background(), "test.")
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	var ps []inventory.Pair
	for _, k := range ks {
		p, err := b.Read(context.Background(), k.Name)
		if err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		ps = append(ps, p)
	}
	hook := func(step string) {
		if step == stop || strings.HasSuffix(stop, "*") && strings.HasSuffix(step, strings.TrimSuffix(stop, "*")) {
			fmt.Println("AT", step)
			time.Sleep(time.Minute) // killed here
		}
	}
	if _, err := bundle.Install(dst, ps, hook); err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	fmt.Println("DONE")
	return 0
}

// TestKillMidInstall kills the installing process with SIGKILL at every
// step of an install and checks that each key file is either absent (the
// old state) or complete (the new state), never torn, that a .key never
// appears without its whole .private, that the key already there is
// untouched, and that the next install completes.
func TestKillMidInstall(t *testing.T) {
	srcDir, ps := pairs(t)
	_, old := pairs(t)
	var steps []string
	steps = append(steps, "validated")
	for _, p := range ps {
		for _, f := range []string{p.Key.Name + ".private", p.Key.Name + ".key"} {
			for _, s := range []string{"partial", "synced", "renamed"} {
				steps = append(steps, f+":"+s)
			}
		}
	}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			dst := t.TempDir()
			if _, err := bundle.Install(dst, old[:1], nil); err != nil {
				t.Fatal(err)
			}
			oldPriv, _ := os.ReadFile(filepath.Join(dst, old[0].Key.Name+".private"))

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "REGDR_INSTALL_CHILD=1", "SRC="+srcDir, "DST="+dst, "STEP="+step)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					line <- sc.Text()
					return
				}
				line <- "EOF"
			}()
			select {
			case l := <-line:
				if l != "AT "+step {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child said %q, want AT %s", l, step)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("child never reached the step")
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()

			for _, p := range ps {
				priv := checkFile(t, filepath.Join(dst, p.Key.Name+".private"), p.Private)
				pub := checkFile(t, filepath.Join(dst, p.Key.Name+".key"), p.Public)
				if pub && !priv {
					t.Fatalf("%s.key is installed without its .private", p.Key.Name)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dst, old[0].Key.Name+".private")); !bytes.Equal(b, oldPriv) {
				t.Fatal("the key already installed was changed")
			}
			// What is there loads: no half key is visible to the signer.
			if _, err := zonesign.LoadKeys(dst, "test."); err != nil {
				t.Fatalf("key directory after the kill does not load: %v", err)
			}
			// The receiver cleans up and installs again.
			if err := bundle.RemoveTemps(dst); err != nil {
				t.Fatal(err)
			}
			if _, err := bundle.Install(dst, ps, nil); err != nil {
				t.Fatalf("install after the kill: %v", err)
			}
			ks, err := zonesign.LoadKeys(dst, "test.")
			if err != nil || len(ks) != 3 {
				t.Fatalf("after reinstall: %d keys, %v", len(ks), err)
			}
		})
	}
}

// checkFile reports whether path holds want, failing on anything other
// than absent or exactly want.
func checkFile(t *testing.T, path string, want []byte) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("%s is torn: %d bytes, want %d (or absent)", filepath.Base(path), len(b), len(want))
	}
	return true
}
