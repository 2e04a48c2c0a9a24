package dnsname

import "testing"

// The example list of RFC 4034 §6.1, in canonical order.
func TestCompareRFC4034Order(t *testing.T) {
	order := []string{
		"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.",
		"zABC.a.EXAMPLE.", "z.example.", `\001.z.example.`, "*.z.example.", `\200.z.example.`,
	}
	for i := 1; i < len(order); i++ {
		c, err := Compare(order[i-1], order[i])
		if err != nil {
			t.Fatal(err)
		}
		if c >= 0 {
			t.Errorf("%s should sort before %s", order[i-1], order[i])
		}
	}
	if c, err := Compare("A.Example", "a.example."); err != nil || c != 0 {
		t.Errorf("case and the final dot must not matter: %d %v", c, err)
	}
	if _, err := Key("a..b."); err == nil {
		t.Error("an empty label was accepted")
	}
}
