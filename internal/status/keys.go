package status

import "time"

// KeysState is a site's DNSSEC key inventory and key transport. Public
// facts only: tags, algorithms, digests, never key material.
type KeysState struct {
	// Keys are the key pairs in the site's key directory.
	Keys []KeyInfo `json:"keys,omitempty"`
	// LastBundle describes the last bundle sent or opened here
	// ("opened tokyo seq 3: 1 installed", "refused tokyo seq 4: ...").
	LastBundle string    `json:"last_bundle,omitempty"`
	LastAt     time.Time `json:"last_at,omitzero"`
	// Error is the last key transport problem ("" when none).
	Error     string    `json:"error,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// KeyInfo is one key pair a site holds.
type KeyInfo struct {
	Zone      string `json:"zone"`
	Tag       uint16 `json:"tag"`
	Algorithm uint8  `json:"algorithm"`
	KSK       bool   `json:"ksk"`
	Digest    string `json:"digest"`
	// State is "ok" or "mismatch" (private key does not match its
	// DNSKEY).
	State string `json:"state"`
}
