package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite testdata/help/*.txt from the current command tree")

// reporting lists the commands whose output scripts read; each must take
// --output json (root.go's promise: "Every command that reports takes
// --output table|json").
var reporting = [][]string{
	{"status"},
	{"config", "check"},
	{"audit", "list"},
	{"audit", "verify"},
	{"lab", "up"},
	{"lab", "down"},
	{"lab", "status"},
	{"lab", "load"},
}

// allCommands returns every command under root, root first, depth first
// in cobra's (sorted) order, hidden commands included.
func allCommands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		out = append(out, allCommands(c)...)
	}
	return out
}

// argsOf is the command's path below the root: "regdr lab up" → [lab up].
func argsOf(c *cobra.Command) []string { return strings.Fields(c.CommandPath())[1:] }

// goldenName is the file holding c's help: "regdr lab up" → regdr_lab_up.txt.
func goldenName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "_") + ".txt"
}

// helpOf runs `regdr ARGS --help` in-process on a fresh tree (cobra keeps
// parsed flags in the tree) and returns what it printed.
func helpOf(t *testing.T, args []string) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(append([]string{}, args...), "--help"))
	if err := root.Execute(); err != nil {
		t.Fatalf("regdr %s --help: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// firstDiff describes where got and want first differ, line by line.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("line %d:\n  got:  %q\n  want: %q", i+1, gl, wl)
		}
	}
	return "no difference"
}

// TestHelpGolden pins the --help text of every command. After a deliberate
// change, regenerate with `go test ./cmd/regdr -run TestHelpGolden -update`
// and review the diff.
func TestHelpGolden(t *testing.T) {
	// Defaults shown in help come from these; pin them so the goldens do
	// not depend on the shell the tests run in.
	t.Setenv("REGDR_CONFIG", "")
	t.Setenv("REGDR_LAB_DIR", "")
	dir := filepath.Join("testdata", "help")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for _, c := range allCommands(newRoot()) {
		name := goldenName(c)
		want[name] = true
		t.Run(c.CommandPath(), func(t *testing.T) {
			got := helpOf(t, argsOf(c))
			if !strings.Contains(got, "Usage:\n  "+c.CommandPath()) {
				t.Errorf("help does not show usage of %q:\n%s", c.CommandPath(), got)
			}
			golden := filepath.Join(dir, name)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/regdr -update to create it)", err)
			}
			if got != string(b) {
				t.Errorf("%s differs from `%s --help` (rerun with -update if the change is meant):\n%s",
					golden, c.CommandPath(), firstDiff(got, string(b)))
			}
		})
	}
	// A golden left behind by a removed or renamed command is stale.
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if want[filepath.Base(f)] {
			continue
		}
		if *update {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s belongs to no command (rerun with -update to remove it)", f)
	}
	if len(want) < 12 {
		t.Errorf("walked only %d commands; the tree lost some", len(want))
	}
}

func TestEveryCommandHasShort(t *testing.T) {
	for _, c := range allCommands(newRoot()) {
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("%q has no Short description (it shows blank in its parent's command list)", c.CommandPath())
		}
	}
}

// TestReportingCommandsTakeJSON checks flag parsing and the format check
// for every reporting command in-process (lab up cannot run in a unit
// test); the other tests run most of them with -o json end to end.
func TestReportingCommandsTakeJSON(t *testing.T) {
	for _, path := range reporting {
		name := strings.Join(path, " ")
		forms := [][]string{{"--output", "json"}, {"-o", "json"}, {"--output=json"}, {"-ojson"}}
		for _, form := range forms {
			t.Run(name+" "+strings.Join(form, " "), func(t *testing.T) {
				root := newRoot()
				cmd, rest, err := root.Find(path)
				if err != nil || len(rest) != 0 || cmd.CommandPath() != "regdr "+name {
					t.Fatalf("find %q: got %q, rest %q, err %v", name, cmd.CommandPath(), rest, err)
				}
				if !cmd.Runnable() {
					t.Fatalf("%q does nothing when run", name)
				}
				if err := cmd.ParseFlags(form); err != nil {
					t.Fatalf("%q rejects %v: %v", name, form, err)
				}
				if got := cmd.Flag("output").Value.String(); got != "json" {
					t.Fatalf("%q with %v: --output is %q", name, form, got)
				}
				if err := root.PersistentPreRunE(cmd, nil); err != nil {
					t.Errorf("%q refuses %v: %v", name, form, err)
				}
			})
		}
		t.Run(name+" -o yaml", func(t *testing.T) {
			root := newRoot()
			cmd, _, err := root.Find(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags([]string{"-o", "yaml"}); err != nil {
				t.Fatal(err)
			}
			err = root.PersistentPreRunE(cmd, nil)
			if err == nil || !isUsage(err) {
				t.Errorf("%q -o yaml: got %v, want a usage error", name, err)
			}
		})
	}
}
