package store

import (
	"context"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Blocked(zone) holds the newest version of zone that the active site's
// gates refused. It is what `regdr zone approve` shows and signs: two
// operators approving this exact serial and digest let it through (.se
// 2009: one person's visual check must never be enough).
func (k Keys) Blocked(zone string) string {
	return k.p() + "/blocked/" + url.PathEscape(CanonicalZone(zone))
}

// BlockedVersion is one refused version, as the agent that refused it saw
// it.
type BlockedVersion struct {
	Zone     string    `json:"zone"`
	Serial   uint32    `json:"serial"`
	Digest   string    `json:"digest"`
	Source   string    `json:"source"`
	Site     string    `json:"site"`
	Gates    []string  `json:"gates"`
	Findings []string  `json:"findings,omitempty"`
	At       time.Time `json:"at"`
	// Expires ends the window in which approvals count (the subject the
	// operators sign carries it).
	Expires time.Time `json:"expires"`
	// Published is set once an approved override was served.
	Published   bool      `json:"published,omitempty"`
	PublishedAt time.Time `json:"published_at,omitzero"`
	Approvers   []string  `json:"approvers,omitempty"`
}

// PutBlocked records b unless the record already names the same serial
// and digest (its approval window, and the approvals given in it, stay).
func PutBlocked(ctx context.Context, cli clientv3.KV, keys Keys, b BlockedVersion) (BlockedVersion, error) {
	key := keys.Blocked(b.Zone)
	var cur BlockedVersion
	rev, found, err := GetJSON(ctx, cli, key, &cur)
	if err != nil {
		return b, err
	}
	if !found {
		return b, CreateJSON(ctx, cli, key, b)
	}
	if cur.Serial == b.Serial && cur.Digest == b.Digest {
		return cur, nil
	}
	return b, UpdateJSON(ctx, cli, key, b, rev)
}

// GetBlocked reads the zone's blocked-version record.
func GetBlocked(ctx context.Context, kv clientv3.KV, keys Keys, zone string) (BlockedVersion, int64, bool, error) {
	var b BlockedVersion
	rev, found, err := GetJSON(ctx, kv, keys.Blocked(zone), &b)
	return b, rev, found, err
}

// MarkBlockedPublished records that the approved override went out, only
// if the record is still the one read.
func MarkBlockedPublished(ctx context.Context, kv clientv3.KV, keys Keys, b BlockedVersion, rev int64, approvers []string) error {
	b.Published, b.PublishedAt, b.Approvers = true, time.Now().UTC(), approvers
	return UpdateJSON(ctx, kv, keys.Blocked(b.Zone), b, rev)
}
