package store

import (
	"context"
	"fmt"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Rollback(zone) holds an operator's request to re-publish a stored
// version; the active site's agent carries it out and writes the outcome
// back into the same record.
func (k Keys) Rollback(zone string) string {
	return k.p() + "/rollback/" + url.PathEscape(CanonicalZone(zone))
}

// RollbackRequest is one rollback, from request to outcome. The active
// agent sets Done with either NewSerial or Error.
type RollbackRequest struct {
	ID        string    `json:"id"`
	Zone      string    `json:"zone"`
	ToSerial  uint32    `json:"to_serial"`
	By        string    `json:"by"`
	Reason    string    `json:"reason"`
	Requested time.Time `json:"requested"`

	Done      bool      `json:"done"`
	Site      string    `json:"site,omitempty"`
	NewSerial uint32    `json:"new_serial,omitempty"`
	Error     string    `json:"error,omitempty"`
	Finished  time.Time `json:"finished,omitzero"`
}

// PutRollback writes a new request, replacing a finished one. A request
// still pending is not replaced (ErrExists): one rollback at a time.
func PutRollback(ctx context.Context, cli *clientv3.Client, keys Keys, r RollbackRequest) error {
	key := keys.Rollback(r.Zone)
	var cur RollbackRequest
	rev, found, err := GetJSON(ctx, cli, key, &cur)
	if err != nil {
		return err
	}
	if !found {
		return CreateJSON(ctx, cli, key, r)
	}
	if !cur.Done {
		return fmt.Errorf("rollback %s to %d requested by %s is still pending: %w", cur.Zone, cur.ToSerial, cur.By, ErrExists)
	}
	return UpdateJSON(ctx, cli, key, r, rev)
}

// GetRollback reads the zone's rollback record.
func GetRollback(ctx context.Context, cli *clientv3.Client, keys Keys, zone string) (RollbackRequest, int64, bool, error) {
	var r RollbackRequest
	rev, found, err := GetJSON(ctx, cli, keys.Rollback(zone), &r)
	return r, rev, found, err
}

// FinishRollback records the outcome, only if the record is still the one
// read (rev), so a newer request is never marked done by an old run.
func FinishRollback(ctx context.Context, cli *clientv3.Client, keys Keys, r RollbackRequest, rev int64) error {
	r.Done, r.Finished = true, time.Now().UTC()
	return UpdateJSON(ctx, cli, keys.Rollback(r.Zone), r, rev)
}
