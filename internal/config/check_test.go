package config

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for valid
	}{
		{"127.0.0.1:53", ""},
		{"[::1]:8008", ""},
		{"[fe80::1%eth0]:7946", ""},
		{"ns1.example.net:53", ""},
		{"ns1.example.net.:53", ""},
		{"localhost:1", ""},
		{"127.0.0.1:65535", ""},
		{"x", "missing port"},
		{"127.0.0.1:", "missing port"},
		{":53", "missing host"},
		{"127.0.0.1:0", "port 0 out of range 1-65535"},
		{"127.0.0.1:65536", "port 65536 out of range 1-65535"},
		{"127.0.0.1:-1", `port "-1" is not a number`},
		{"127.0.0.1:123456", `port "123456" is not a number`},
		{"::1:53", "too many colons (write an IPv6 host in brackets: [::1]:53)"},
		{"[::1:53", "missing ']'"},
		{"-bad.example:53", `host "-bad.example" is neither an IP address nor a DNS name`},
		{"a..b:53", `host "a..b" is neither an IP address nor a DNS name`},
		{"under_score.example:53", `host "under_score.example" is neither an IP address nor a DNS name`},
	}
	for _, tt := range tests {
		err := checkAddr(tt.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("checkAddr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"http://127.0.0.1:2379", true},
		{"https://etcd1.example.net:2379", true},
		{"https://[::1]:2379/", true},
		{"https://127.0.0.1", false},
		{"https://user:pw@127.0.0.1:2379", false},
		{"https://127.0.0.1:2379?x=1", false},
		{"grpc://127.0.0.1:2379", false},
		{"127.0.0.1:2379", false},
		{"", false},
		{"http://%zz", false},
	}
	for _, tt := range tests {
		if err := checkEndpoint(tt.in); (err == nil) != tt.ok {
			t.Errorf("checkEndpoint(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestCheckDomainName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{".", true},
		{"example.", true},
		{"xfr", true},
		{"_dmarc.example.", true},
		{"0/25.2.0.192.in-addr.arpa.", true},
		{"xn--wgv71a.", true},
		{"", false},
		{"..", false},
		{"a..b.", false},
		{"a b.", false},
		{"a\\.b.", false},
		{strings.Repeat("a", 64) + ".", false},
	}
	for _, tt := range tests {
		if err := checkDomainName(tt.in); (err == nil) != tt.ok {
			t.Errorf("checkDomainName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestCheckCron(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for valid
	}{
		{"* * * * *", ""},
		{"0 3 * * *", ""},
		{"*/15 0-6,22-23 * * 1-5", ""},
		{"5/10 * * * *", ""},
		{"0 0 1-31/2 1,6,12 0,7", ""},
		{"  0  3 * * *  ", ""},
		{"0 3 * *", `cron "0 3 * *" has 4 fields, want 5 (minute hour day-of-month month day-of-week)`},
		{"0 3 * * * *", `cron "0 3 * * * *" has 6 fields, want 5 (minute hour day-of-month month day-of-week)`},
		{"", `cron "" has 0 fields, want 5 (minute hour day-of-month month day-of-week)`},
		{"60 * * * *", `cron "60 * * * *": minute field "60": 60 out of range 0-59`},
		{"* 24 * * *", `cron "* 24 * * *": hour field "24": 24 out of range 0-23`},
		{"* * 0 * *", `cron "* * 0 * *": day of month field "0": 0 out of range 1-31`},
		{"* * * 13 *", `cron "* * * 13 *": month field "13": 13 out of range 1-12`},
		{"* * * * 8", `cron "* * * * 8": day of week field "8": 8 out of range 0-7`},
		{"* * * jan *", `cron "* * * jan *": month field "jan": "jan" is not a number`},
		{"*/x * * * *", `cron "*/x * * * *": minute field "*/x": step: "x" is not a number`},
		{"*/61 * * * *", `cron "*/61 * * * *": minute field "*/61": step 61 out of range 1-60`},
		{"5-1 * * * *", `cron "5-1 * * * *": minute field "5-1": range 5-1 runs backwards`},
		{"1- * * * *", `cron "1- * * * *": minute field "1-": "" is not a number`},
		{"1,,2 * * * *", `cron "1,,2 * * * *": minute field "1,,2": empty list item`},
		{"-1 * * * *", `cron "-1 * * * *": minute field "-1": "" is not a number`},
		{"? * * * *", `cron "? * * * *": minute field "?": "?" is not a number`},
	}
	for _, tt := range tests {
		err := checkCron(tt.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("checkCron(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		d    time.Duration
		text string
	}{
		{2 * time.Second, "2s"},
		{500 * time.Millisecond, "500ms"},
		{72 * time.Hour, "72h"},
		{90 * time.Minute, "1h30m"},
		{time.Minute, "1m"},
		{time.Hour + time.Second, "1h0m1s"},
		{0, "0s"},
		{-2 * time.Second, "-2s"},
	}
	for _, tt := range tests {
		out, err := yaml.Marshal(struct{ D Duration }{Duration{tt.d}})
		if err != nil {
			t.Fatal(err)
		}
		if want := "d: " + tt.text + "\n"; string(out) != want {
			t.Errorf("marshal %v = %q, want %q", tt.d, out, want)
		}
		var back struct{ D Duration }
		if err := yaml.Unmarshal(out, &back); err != nil || back.D.Duration != tt.d {
			t.Errorf("unmarshal %q = %v, %v; want %v", out, back.D, err, tt.d)
		}
	}
	for _, bad := range []string{"d: 5", "d: 3d", "d: [1s]", "d: ''"} {
		var v struct{ D Duration }
		if err := yaml.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("unmarshal %q: no error, got %v", bad, v.D)
		}
	}
}
