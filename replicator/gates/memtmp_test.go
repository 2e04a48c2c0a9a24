package gates

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/regdr/regdr/replicator/zone"
)

func TestMemTmp(t *testing.T) {
	z, err := zone.ParseFile("/tmp/regdr-zonecheck/100000/base.zone", "test.")
	if err != nil {
		t.Fatal(err)
	}
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	t.Logf("zone: heap %d MB", m.HeapAlloc>>20)
	ix := NewIndex(z)
	runtime.GC()
	runtime.ReadMemStats(&m)
	t.Logf("zone+index: heap %d MB", m.HeapAlloc>>20)
	f, _ := os.Create("/tmp/heap-ix.out")
	pprof.WriteHeapProfile(f)
	f.Close()
	runtime.KeepAlive(ix)
	runtime.KeepAlive(z)
}
