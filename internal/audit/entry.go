// Package audit is regdr's append-only, hash-chained audit log in etcd.
// Every operator action and every decision regdr takes for them (gate
// overrides with their two approvers, freezes, failover steps, key
// transport) is one Entry. Each entry carries the hash of the one before,
// so editing, removing or reordering entries breaks the chain, and Verify
// names the first entry where it breaks.
//
// What the chain proves: the log read back is the log that was appended,
// unless someone rewrote every entry from the change onward and the head.
// To catch that too, keep a copy of a Head (seq and hash) outside etcd,
// for instance in a drill report, and later check that entry's hash.
//
// Details must never contain secrets. Callers pass identifiers only: key
// tags and fingerprints, not key material; user names, not passwords;
// file names, not file contents. The log is readable by every operator
// and is kept forever. Append refuses detail names that look like secrets
// as a backstop, and its errors never echo detail values.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Entry is one audit record. Seq, Time, Prev and Hash are set by Append.
type Entry struct {
	Seq    uint64            `json:"seq"`
	Time   time.Time         `json:"time"`
	Who    string            `json:"who"`    // operator or component, e.g. "alice", "agent/osaka"
	Action string            `json:"action"` // verb, e.g. "freeze", "failover.promote", "gate.override"
	Target string            `json:"target"` // what it acted on, e.g. "test.", "osaka", an operation id
	Result string            `json:"result"` // e.g. "ok", "refused", "failed: <reason>"
	Detail map[string]string `json:"detail,omitempty"`
	// Prev is the Hash of entry Seq-1, "" for the first entry.
	Prev string `json:"prev"`
	// Hash is Digest() of this entry.
	Hash string `json:"hash"`
}

// Head is the last entry's seq and hash, kept at keys.AuditHead(). Seq 0
// with an empty hash is the empty log.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// hashEncodingVersion names the canonical encoding below; a change to it
// must bump this so that old entries still verify under the old rule.
const hashEncodingVersion = 1

// canonical is what an entry's hash covers: every field except Hash, in
// this fixed order, as produced by encoding/json:
//
//	{"v":1,"seq":N,"time":"<RFC 3339 with nanoseconds, UTC>","who":"…",
//	 "action":"…","target":"…","result":"…","detail":{…},"prev":"<hex>"}
//
// Struct fields are encoded in declaration order and map keys in sorted
// order, so the bytes depend only on the values. Detail is {} when empty
// or nil, never null, so an entry that round-trips through JSON with
// "detail" omitted hashes the same. Hash = lower-case hex of SHA-256 of
// these bytes.
type canonical struct {
	V      int               `json:"v"`
	Seq    uint64            `json:"seq"`
	Time   string            `json:"time"`
	Who    string            `json:"who"`
	Action string            `json:"action"`
	Target string            `json:"target"`
	Result string            `json:"result"`
	Detail map[string]string `json:"detail"`
	Prev   string            `json:"prev"`
}

// Digest returns the hash the entry should carry, computed over every
// field except Hash (see canonical).
func (e Entry) Digest() string {
	d := e.Detail
	if d == nil {
		d = map[string]string{}
	}
	b, err := json.Marshal(canonical{
		V:      hashEncodingVersion,
		Seq:    e.Seq,
		Time:   e.Time.UTC().Format(time.RFC3339Nano),
		Who:    e.Who,
		Action: e.Action,
		Target: e.Target,
		Result: e.Result,
		Detail: d,
		Prev:   e.Prev,
	})
	if err != nil {
		// Only strings, a map of strings and integers: Marshal cannot fail.
		panic("audit: encode entry: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
