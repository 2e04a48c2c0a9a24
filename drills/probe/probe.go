// Package probe watches a deployment from outside while a drill runs: the
// zone's SOA at the public secondary (availability and serial continuity),
// the same question through a validating resolver (DNSSEC validity), a
// write to the registry database, and every agent's health. A Sampler
// runs a probe at a fixed rate and keeps every sample with its time, so a
// report can say what fraction of queries were answered and draw when.
package probe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/overview"
	"github.com/regdr/regdr/internal/unboundlab"
	"github.com/regdr/regdr/replicator/zonepull"
)

// Func takes one sample. It must return within ctx's deadline. Value is
// what was seen ("2026112401", "secure"); Serial is set by DNS probes.
type Func func(ctx context.Context) (value string, serial uint32, err error)

// Sample is one probe result.
type Sample struct {
	At      time.Time     `json:"at"`
	OK      bool          `json:"ok"`
	Value   string        `json:"value,omitempty"`
	Serial  uint32        `json:"serial,omitempty"`
	Error   string        `json:"error,omitempty"`
	Latency time.Duration `json:"latency_ns"`
}

// DNSSerial asks the server at addr for origin's SOA serial.
func DNSSerial(addr, origin string) Func {
	return func(ctx context.Context) (string, uint32, error) {
		s, err := zonepull.QuerySerial(ctx, addr, origin)
		if err != nil {
			return "", 0, fmt.Errorf("SOA %s at %s: %w", origin, addr, err)
		}
		return strconv.FormatUint(uint64(s), 10), s, nil
	}
}

// DNSSEC asks the validating resolver for origin's SOA; only a secure
// answer passes. An insecure answer fails too: a signed zone that stops
// validating as secure is as broken for a validating client.
func DNSSEC(resolver, origin string) Func {
	return func(ctx context.Context) (string, uint32, error) {
		if resolver == "" {
			return "", 0, errors.New("no validating resolver configured")
		}
		r, err := unboundlab.Validate(ctx, resolver, origin, dns.TypeSOA)
		if err != nil {
			return "", 0, fmt.Errorf("resolve %s SOA via %s: %w", origin, resolver, err)
		}
		var serial uint32
		for _, rr := range r.Answer {
			if soa, ok := rr.(*dns.SOA); ok {
				serial = soa.Serial
			}
		}
		switch {
		case r.Secure:
			return "secure", serial, nil
		case r.Bogus:
			return "bogus", serial, fmt.Errorf("%s SOA is bogus: %s", origin, r.Reason)
		}
		return "insecure", serial, fmt.Errorf("%s SOA answer is not secure (rcode %s)", origin, dns.RcodeToString[r.Rcode])
	}
}

// RegistryWrite proves the registry database takes writes: it connects
// with connString (which should select a read-write server) and assigns a
// transaction id, which only a primary can do, without changing registry
// data (so the probe never makes the generator publish).
func RegistryWrite(connString string) Func {
	return func(ctx context.Context) (string, uint32, error) {
		conn, err := pgx.Connect(ctx, connString)
		if err != nil {
			return "", 0, fmt.Errorf("connect to the registry: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var xid int64
		if err := conn.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
			return "", 0, fmt.Errorf("registry write: %w", err)
		}
		return "xid " + strconv.FormatInt(xid, 10), 0, nil
	}
}

// AgentHealth reads every agent's /v1/status (addrs by site), all at
// once so one dead agent costs one timeout; it passes when all answer
// with health "ok", and otherwise says which did not and why.
func AgentHealth(addrs map[string]string) Func {
	return func(ctx context.Context) (string, uint32, error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		var errs []error
		for site, addr := range addrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := overview.FetchAgent(ctx, addr, time.Second)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, fmt.Errorf("agent %s: %w", site, err))
				case a.Health != "ok":
					errs = append(errs, fmt.Errorf("agent %s: health %s: %s", site, a.Health, strings.Join(a.Problems, "; ")))
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return "", 0, err
		}
		return "ok", 0, nil
	}
}

// Sampler runs one probe at a rate and keeps its samples. Safe for
// concurrent use: Run in one goroutine, read with Samples/FailingSince.
type Sampler struct {
	Name string
	Rate float64
	Fn   Func
	// Timeout bounds one sample; default the interval, at most 2 s.
	Timeout time.Duration

	mu      sync.Mutex
	samples []Sample
	// failingSince is the time of the first failure of the current run
	// of failures (zero while passing).
	failingSince time.Time
}

// Run samples until ctx is done. Samples start on a fixed tick; a slow
// sample delays the next one rather than piling up, so a hung server shows
// as missing answers at the configured rate rather than as a burst.
func (s *Sampler) Run(ctx context.Context) {
	if s.Rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / s.Rate)
	timeout := s.Timeout
	if timeout == 0 {
		timeout = min(max(interval, 500*time.Millisecond), 2*time.Second)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.sample(ctx, timeout)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Sampler) sample(ctx context.Context, timeout time.Duration) {
	c, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	v, serial, err := s.Fn(c)
	cancel()
	if ctx.Err() != nil {
		return // the drill ended mid-sample; not a failure of the service
	}
	smp := Sample{At: start, OK: err == nil, Value: v, Serial: serial, Latency: time.Since(start)}
	if err != nil {
		smp.Error = err.Error()
	}
	s.Add(smp)
}

// Add records a sample (Run calls it; tests may too).
func (s *Sampler) Add(smp Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, smp)
	switch {
	case smp.OK:
		s.failingSince = time.Time{}
	case s.failingSince.IsZero():
		s.failingSince = smp.At
	}
}

// Samples returns a copy of the samples so far.
func (s *Sampler) Samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...)
}

// FailingSince is when the current run of failures began, zero if the
// last sample passed.
func (s *Sampler) FailingSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failingSince
}
