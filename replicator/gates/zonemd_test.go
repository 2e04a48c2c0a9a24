package gates

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The RFC 8976 Appendix A examples: Compute must reproduce every digest the
// RFC publishes, and the gate must accept each zone as published.
func TestComputeRFC8976(t *testing.T) {
	tests := []struct {
		file, origin string
		alg          uint8
		want         string
	}{
		{"rfc8976-a1-simple.zone", "example.", 1,
			"c68090d90a7aed716bc459f9340e3d7c1370d4d24b7e2fc3a1ddc0b9a87153b9a9713b3c9ae5cc27777f98b8e730044c"},
		{"rfc8976-a2-complex.zone", "example.", 1,
			"a3b69bad980a3504e1cffcb0fd6397f93848071c93151f552ae2f6b1711d4bd2d8b39808226d7b9db71e34b72077f8fe"},
		{"rfc8976-a3-multiple.zone", "example.", 1,
			"62e6cf51b02e54b9b5f967d547ce43136792901f9f88e637493daaf401c92c279dd10f0edb1c56f8080211f8480ee306"},
		{"rfc8976-a3-multiple.zone", "example.", 2,
			"08cfa1115c7b948c4163a901270395ea226a930cd2cbcf2fa9a5e6eb85f37c8a4e114d884e66f176eab121cb02db7d652e0cc4827e7a3204f166b47e5613fd27"},
		{"rfc8976-a4-uri-arpa.zone", "uri.arpa.", 1,
			"0dbc3c4dbfd75777c12ca19c337854b1577799901307c482e9d91d5d15cd934d16319d98e30c4201cf25a1d5a0254960"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			z := load(t, "zonemd/"+tt.file, tt.origin)
			got, err := Compute(z, tt.alg)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tt.want {
				t.Errorf("Compute(%d) = %x\nwant            %s", tt.alg, got, tt.want)
			}
		})
	}
	if _, err := Compute(load(t, "zonemd/rfc8976-a1-simple.zone", "example."), 240); err == nil {
		t.Error("Compute with a private hash algorithm: want an error")
	}
}

func TestZONEMDGate(t *testing.T) {
	a1 := "zonemd/rfc8976-a1-simple.zone"
	tests := []struct {
		name   string
		zone   func(t *testing.T) *Input
		status string
		kinds  []string
	}{
		{"A.1 simple", fileInput(a1, "example."), StatusPass, nil},
		{"A.2 complex", fileInput("zonemd/rfc8976-a2-complex.zone", "example."), StatusPass, nil},
		{"A.3 multiple digests, private ones ignored", fileInput("zonemd/rfc8976-a3-multiple.zone", "example."), StatusPass, nil},
		{"A.4 uri.arpa", fileInput("zonemd/rfc8976-a4-uri-arpa.zone", "uri.arpa."), StatusPass, nil},
		{"no ZONEMD", func(t *testing.T) *Input {
			return &Input{Zone: parse(t, "example.",
				"example. 86400 IN SOA ns1.example. admin.example. 1 1800 900 604800 86400",
				"example. 86400 IN NS ns1.example.")}
		}, StatusSkip, nil},
		{"only a private scheme", func(t *testing.T) *Input {
			return &Input{Zone: parse(t, "example.",
				"example. 86400 IN SOA ns1.example. admin.example. 2018031900 1800 900 604800 86400",
				"example. 86400 IN ZONEMD 2018031900 241 1 e1846540e33a9e4189792d18d5d131f605fc283e")}
		}, StatusSkip, nil},
		{"a record changed after digesting", editedInput(a1, "example.", "203.0.113.63", "203.0.113.64"), StatusFail, []string{"zonemd-mismatch"}},
		{"a record added after digesting", func(t *testing.T) *Input {
			in := fileInput(a1, "example.")(t)
			z := in.Zone
			rrs := append(z.RRs(), mustRR(t, "ns3.example. 3600 IN A 203.0.113.65"))
			in.Zone = rebuild(t, z.Origin, rrs)
			return in
		}, StatusFail, []string{"zonemd-mismatch"}},
		{"serial of another version", editedInput(a1, "example.", "ZONEMD  2018031900", "ZONEMD  2018031899"), StatusFail, []string{"zonemd-serial"}},
		{"digest too short", editedInput(a1, "example.", "777f98b8e730044c )", ")"), StatusFail, []string{"zonemd-length"}},
		{"two SHA-384 digests", editedInput(a1, "example.", "ns1           3600",
			"example. 86400 IN ZONEMD 2018031900 1 1 000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\nns1           3600"),
			StatusFail, []string{"zonemd-duplicate", "zonemd-mismatch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.zone(t)
			r := runOne(t, zonemdGate{DefaultConfig()}, in)
			checkResult(t, r, tt.status, tt.kinds, nil)
			for _, f := range r.Findings {
				if in.Zone.File != "" && (f.Line == 0 || f.File == "") {
					t.Errorf("finding without file:line: %v", f)
				}
			}
		})
	}
}

func fileInput(path, origin string) func(t *testing.T) *Input {
	return func(t *testing.T) *Input {
		return &Input{Zone: load(t, path, origin), Now: time.Date(2021, 2, 1, 0, 0, 0, 0, time.UTC)}
	}
}

// editedInput is a testdata file with one substring replaced.
func editedInput(path, origin, old, new string) func(t *testing.T) *Input {
	return func(t *testing.T) *Input {
		text := readTestdata(t, path)
		if !strings.Contains(text, old) {
			t.Fatalf("%s has no %q", path, old)
		}
		z := parseText(t, strings.Replace(text, old, new, 1), "testdata/"+path, origin)
		return &Input{Zone: z, Now: time.Date(2021, 2, 1, 0, 0, 0, 0, time.UTC)}
	}
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return rr
}
