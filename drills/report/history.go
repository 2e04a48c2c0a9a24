package report

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Entry is the condensed record of one drill kept in etcd at
// <prefix>/drills/<name>/<start time>: enough for the trend, with the path
// of the full report on the machine that ran it.
type Entry struct {
	Scenario        string    `json:"scenario"`
	Started         time.Time `json:"started"`
	Finished        time.Time `json:"finished"`
	Outcome         string    `json:"outcome"`
	Target          string    `json:"target"`
	RTOSeconds      *float64  `json:"rto_seconds,omitempty"`
	RPOWrites       *int      `json:"rpo_writes,omitempty"`
	RPOSeconds      *float64  `json:"rpo_seconds,omitempty"`
	DNSAvailability *float64  `json:"dns_availability,omitempty"`
	Report          string    `json:"report,omitempty"`
	By              string    `json:"by,omitempty"`
}

// Summary condenses a report.
func Summary(r *Report, reportPath, by string) Entry {
	return Entry{
		Scenario: r.Scenario, Started: r.Started.UTC(), Finished: r.Finished.UTC(), Outcome: r.Outcome, Target: r.Target,
		RTOSeconds: r.Metrics.RTOSeconds, RPOWrites: r.Metrics.RPOWrites, RPOSeconds: r.Metrics.RPOSeconds,
		DNSAvailability: r.Metrics.DNSAvailability, Report: reportPath, By: by,
	}
}

// historyPrefix is <prefix>/drills/.
func historyPrefix(prefix string) string {
	p := strings.TrimRight(prefix, "/")
	if p == "" {
		p = "/regdr"
	}
	return p + "/drills/"
}

// HistoryKey is where an entry lives; RFC 3339 UTC with fixed-width
// nanoseconds sorts lexically in time order.
func HistoryKey(prefix string, e Entry) string {
	return historyPrefix(prefix) + e.Scenario + "/" + e.Started.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

// Record stores an entry; a drill's history is append-only, so an
// existing key (the same drill recorded twice) is left as it was.
func Record(ctx context.Context, kv clientv3.KV, prefix string, e Entry) error {
	key := HistoryKey(prefix, e)
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("drill history %s: %w", key, err)
	}
	_, err = kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("drill history %s: %w", key, err)
	}
	return nil
}

// History lists entries, oldest first; name "" lists every scenario.
func History(ctx context.Context, kv clientv3.KV, prefix, name string) ([]Entry, error) {
	p := historyPrefix(prefix)
	if name != "" {
		p += name + "/"
	}
	resp, err := kv.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("drill history %s: %w", p, err)
	}
	var out []Entry
	for _, kv := range resp.Kvs {
		var e Entry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("drill history %s: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Scenario != out[j].Scenario {
			return out[i].Scenario < out[j].Scenario
		}
		return out[i].Started.Before(out[j].Started)
	})
	return out, nil
}

// Trend describes how a value moved against the previous run of the same
// scenario: "=", "▲ +1.2" (worse for RTO/RPO, which should fall) or
// "▼ -0.8"; "" when either is missing.
func Trend(prev, cur *float64) string {
	if prev == nil || cur == nil {
		return ""
	}
	d := *cur - *prev
	switch {
	case d > 0.05:
		return fmt.Sprintf("▲ +%.1f", d)
	case d < -0.05:
		return fmt.Sprintf("▼ %.1f", d)
	}
	return "="
}
