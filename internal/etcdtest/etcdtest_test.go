package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/etcdtest"
)

// TestStartAndCleanup: the member serves while the test runs and is gone
// once the test's cleanups have run.
func TestStartAndCleanup(t *testing.T) {
	var endpoints []string
	t.Run("inner", func(t *testing.T) {
		eps, cli := etcdtest.Start(t)
		endpoints = eps
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "/regdr/k", "v"); err != nil {
			t.Fatalf("put: %v", err)
		}
		resp, err := cli.Get(ctx, "/regdr/k")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Fatalf("get = %v, %v", resp, err)
		}
	})
	if len(endpoints) != 1 {
		t.Fatalf("endpoints = %v, want one", endpoints)
	}
	cli := etcdtest.Client(t, endpoints)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := cli.Get(ctx, "/regdr/k"); err == nil {
		t.Fatalf("etcd at %v still answers after its test ended", endpoints)
	}
}

// TestTwoInOneTest: tests that need two independent etcds (two
// deployments) get separate members.
func TestTwoInOneTest(t *testing.T) {
	a, cliA := etcdtest.Start(t)
	b, cliB := etcdtest.Start(t)
	if a[0] == b[0] {
		t.Fatalf("both members at %s", a[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cliA.Put(ctx, "/regdr/only-a", "1"); err != nil {
		t.Fatal(err)
	}
	resp, err := cliB.Get(ctx, "/regdr/only-a")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("member b sees a's key: %v, %v", resp, err)
	}
}
