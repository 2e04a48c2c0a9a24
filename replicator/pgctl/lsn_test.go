package pgctl

import "testing"

func TestLSN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LSN
		bad  bool
	}{
		{in: "0/0", want: 0},
		{in: "16/B374D848", want: 0x16B374D848},
		{in: "FFFFFFFF/FFFFFFFF", want: 1<<64 - 1},
		{in: "0/3000148", want: 0x3000148},
		{in: "3000148", bad: true},
		{in: "1/2/3", bad: true},
		{in: "100000000/0", bad: true},
		{in: "x/0", bad: true},
	} {
		got, err := ParseLSN(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseLSN(%q) = %v; want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if back, _ := ParseLSN(got.String()); back != got {
			t.Errorf("round trip of %q: %v", tc.in, back)
		}
	}
}
