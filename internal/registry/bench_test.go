package registry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/pglab/pglabtest"
	"github.com/regdr/regdr/internal/registry"
)

// BenchmarkPopulate1M loads a million domains into a fresh database per
// iteration, with a streaming standby attached as in the lab. Too slow for
// `go test`; run it with
//
//	go test -run '^$' -bench Populate1M -benchtime 1x ./internal/registry/
func BenchmarkPopulate1M(b *testing.B) {
	const n = 1_000_000
	primary := pglabtest.Primary(b, "osaka")
	pglabtest.Standby(b, primary, "osaka")
	admin := pglabtest.Conn(b, primary, "registry")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		db := fmt.Sprintf("bench%d", i)
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db+" OWNER regdr"); err != nil {
			b.Fatal(err)
		}
		conn := pglabtest.Conn(b, primary, db)
		if err := registry.Apply(ctx, conn); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := registry.Populate(ctx, conn, "test", n); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c, err := registry.Count(ctx, conn)
		if err != nil || c.Domains != n || c.Delegations != n {
			b.Fatalf("after Populate(%d): %+v, %v", n, c, err)
		}
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "domains/s")
}
