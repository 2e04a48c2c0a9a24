package probe

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regdr/regdr/internal/status"
)

// TestSampler: samples come at the configured rate, failures are kept with
// their error, and FailingSince tracks the current run of failures.
func TestSampler(t *testing.T) {
	var n atomic.Int32
	s := &Sampler{Name: "x", Rate: 50, Fn: func(ctx context.Context) (string, uint32, error) {
		i := n.Add(1)
		if i >= 5 && i < 10 {
			return "", 0, errors.New("down")
		}
		return "up", uint32(i), nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Samples()) < 7 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.FailingSince().IsZero() {
		t.Errorf("FailingSince zero during failures")
	}
	for len(s.Samples()) < 12 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	smp := s.Samples()
	if len(smp) < 12 {
		t.Fatalf("%d samples in 5s at 50/s", len(smp))
	}
	if !s.FailingSince().IsZero() {
		t.Errorf("FailingSince set after recovery")
	}
	for i, x := range smp[:12] {
		want := i+1 < 5 || i+1 >= 10
		if x.OK != want || (!x.OK && x.Error != "down") || (x.OK && x.Serial != uint32(i+1)) {
			t.Errorf("sample %d = %+v", i, x)
		}
		if i > 0 && !x.At.After(smp[i-1].At) {
			t.Errorf("sample %d not after %d", i, i-1)
		}
	}
	// 50/s: the spacing is about 20ms, not a burst.
	if d := smp[11].At.Sub(smp[1].At); d < 150*time.Millisecond {
		t.Errorf("10 intervals took %s at 50/s", d)
	}
}

// TestAgentHealth against two real HTTP servers: one healthy, one degraded
// with a problem, and a dead address.
func TestAgentHealth(t *testing.T) {
	serve := func(a status.Agent) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(a)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return l.Addr().String()
	}
	ok := serve(status.Agent{Site: "tokyo", Health: "ok"})
	bad := serve(status.Agent{Site: "osaka", Health: "degraded", Problems: []string{"zone test. blocked"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if v, _, err := AgentHealth(map[string]string{"tokyo": ok})(ctx); err != nil || v != "ok" {
		t.Errorf("healthy: %q %v", v, err)
	}
	_, _, err := AgentHealth(map[string]string{"tokyo": ok, "osaka": bad})(ctx)
	if err == nil || !strings.Contains(err.Error(), "agent osaka: health degraded: zone test. blocked") {
		t.Errorf("degraded: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	_, _, err = AgentHealth(map[string]string{"witness": dead})(ctx)
	if err == nil || !strings.Contains(err.Error(), "agent witness") {
		t.Errorf("dead: %v", err)
	}
}
