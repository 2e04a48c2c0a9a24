package pgctl

import (
	"testing"
	"time"
)

func TestDecideSync(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	after := 10 * time.Second
	on := SyncSetting([]string{"osaka"})
	for _, tc := range []struct {
		name      string
		want      []string
		setting   string
		streaming []string
		since     time.Time
		now       time.Time
		action    SyncAction
		newSince  time.Time
		missing   time.Duration
	}{
		{name: "sync and streaming", want: []string{"osaka"}, setting: on, streaming: []string{"osaka"}, now: t0, action: SyncKeep},
		{name: "streaming clears the clock", want: []string{"osaka"}, setting: on, streaming: []string{"osaka"}, since: t0, now: t0.Add(time.Hour), action: SyncKeep},
		{name: "other standby does not count", want: []string{"osaka"}, setting: on, streaming: []string{"nagoya"}, now: t0, action: SyncKeep, newSince: t0},
		{name: "first miss starts the clock", want: []string{"osaka"}, setting: on, now: t0, action: SyncKeep, newSince: t0},
		{name: "missing less than after", want: []string{"osaka"}, setting: on, since: t0, now: t0.Add(after - time.Millisecond), action: SyncKeep, newSince: t0, missing: after - time.Millisecond},
		{name: "missing exactly after degrades", want: []string{"osaka"}, setting: on, since: t0, now: t0.Add(after), action: SyncDegrade, newSince: t0, missing: after},
		{name: "already degraded stays", want: []string{"osaka"}, setting: "", since: t0, now: t0.Add(time.Hour), action: SyncKeep, newSince: t0, missing: time.Hour},
		{name: "back and streaming restores", want: []string{"osaka"}, setting: "", streaming: []string{"osaka"}, since: t0, now: t0.Add(time.Hour), action: SyncRestore},
		{name: "clock from the future restarts", want: []string{"osaka"}, setting: on, since: t0.Add(time.Hour), now: t0, action: SyncKeep, newSince: t0},
		{name: "nothing wanted", want: nil, setting: on, now: t0, action: SyncKeep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec, since := decideSync(tc.want, after, tc.setting, tc.streaming, tc.since, tc.now)
			if dec.Action != tc.action || !since.Equal(tc.newSince) || dec.MissingFor != tc.missing {
				t.Errorf("decision %+v, since %v; want action %s, since %v, missing %v", dec, since, tc.action, tc.newSince, tc.missing)
			}
			if dec.Reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestSyncSetting(t *testing.T) {
	for in, want := range map[string]string{
		"":           "",
		"osaka":      `FIRST 1 ("osaka")`,
		"osaka,kobe": `FIRST 1 ("osaka", "kobe")`,
		`we"ird`:     `FIRST 1 ("we""ird")`,
	} {
		var names []string
		if in != "" {
			names = splitComma(in)
		}
		if got := SyncSetting(names); got != want {
			t.Errorf("SyncSetting(%q) = %q; want %q", names, got, want)
		}
	}
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}
