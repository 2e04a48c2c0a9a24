package bundle_test

import (
	"testing"
	"time"

	"github.com/regdr/regdr/keys/bundle"
)

// FuzzDecode: no input makes the decoder panic, and whatever it accepts
// has the fields Verify relies on.
func FuzzDecode(f *testing.F) {
	tokyo, osaka := newSite(f, "tokyo"), newSite(f, "osaka")
	_, ps := pairs(f)
	// One key keeps the seed small: the mutator and the minimizer work on
	// every byte of it.
	env, _, err := bundle.Seal(bundle.Header{From: "tokyo", To: "osaka", Seq: 1, Time: time.Now()}, ps[1:], osaka.id.Age.Recipient(), tokyo.id.Signing, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"header":"e30=","sig":"","ciphertext":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := bundle.Decode(b, 4096+len(env))
		if err != nil {
			return
		}
		if s.Header.From == "" || s.Header.To == "" || s.Header.Seq == 0 || len(s.Header.CiphertextSHA256) != 64 {
			t.Fatalf("accepted a header without its required fields: %+v", s.Header)
		}
		// Verify must refuse anything not signed by tokyo's key, and never
		// panic.
		if err := s.Verify("osaka", signersOf(tokyo, osaka), 0); err == nil && string(b) != string(env) {
			// Only a byte-identical signed header with the same
			// ciphertext can pass; JSON re-encodings of the same
			// fields are fine too, so check the ciphertext decrypts.
			if _, err := s.Decrypt(osaka.id.Age, 0); err != nil {
				t.Fatalf("verified but does not decrypt: %v", err)
			}
		}
	})
}
