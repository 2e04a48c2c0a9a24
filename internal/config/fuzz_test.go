package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics; every problem can be found (it has a
// field path or a line); a nil Config comes with a problem; and a config
// without problems survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/invalid/*.yaml")
	examples, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	for _, s := range append(append(seeds, more...), examples...) {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]\nsites: *a\n"))
	f.Add([]byte("etcd: &e {tls: *e}\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, probs := Parse(data, "fuzz.yaml")
		if c == nil && len(probs) == 0 {
			t.Fatal("nil config without a problem")
		}
		for _, p := range probs {
			if p.Path == "" && p.Line == 0 {
				t.Fatalf("problem with neither path nor line: %#v", p)
			}
		}
		if c == nil || len(probs) > 0 {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, probs := Parse(out, "fuzz.yaml")
		if len(probs) > 0 {
			t.Fatalf("re-parse: %v\n%s", probs, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config\n%s", out)
		}
	})
}
