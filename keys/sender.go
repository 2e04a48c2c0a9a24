package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys/bundle"
	"github.com/regdr/regdr/keys/identity"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/keys/proof"
)

// ErrPending: a bundle to that site is still waiting to be opened; the
// sender does not pile more on top (the receiver may be down).
var ErrPending = errors.New("a bundle is still pending")

// Sender seals the keys a site holds for the sites that lack them.
type Sender struct {
	KV      clientv3.KV
	Keys    store.Keys
	Cfg     *config.Config
	Site    string
	ID      *identity.Private
	Backend inventory.Backend
	Log     *slog.Logger
	// Audit may be nil; when set, every bundle sent is recorded.
	Audit *audit.Log
}

// Sync sends every peer data site one bundle of the keys it has no
// receipt for. Peers with a bundle still pending are skipped. It returns
// the headers of the bundles sent.
func (s *Sender) Sync(ctx context.Context) ([]bundle.Header, error) {
	var sent []bundle.Header
	var errs []error
	for _, to := range peers(s.Cfg, s.Site) {
		pairs, err := s.Lacking(ctx, to)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(pairs) == 0 {
			continue
		}
		h, err := s.Send(ctx, to, pairs)
		if errors.Is(err, ErrPending) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sent = append(sent, h)
	}
	return sent, errors.Join(errs...)
}

// Lacking returns the pairs of every configured zone that site `to` holds
// no receipt for (or a receipt for another key with the same tag). Keys
// whose private half does not match are never sent.
func (s *Sender) Lacking(ctx context.Context, to string) ([]inventory.Pair, error) {
	pk, ok := Signers(s.Cfg)(to)
	if !ok {
		return nil, fmt.Errorf("send keys to %s: %w", to, identity.ErrNoIdentity)
	}
	p := PathsFor(s.Keys)
	var out []inventory.Pair
	for _, z := range s.Cfg.Zones {
		zone := store.CanonicalZone(z.Origin)
		ks, err := s.Backend.List(ctx, zone)
		if err != nil {
			return nil, fmt.Errorf("send keys to %s: %w", to, err)
		}
		if len(ks) == 0 {
			continue
		}
		rs, err := readReceipts(ctx, s.KV, p, to, zone)
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			if k.State != inventory.StateOK {
				s.Log.Warn("key not sent: its private key does not match", "key", k.String(), "digest", k.Digest)
				continue
			}
			if sr, ok := rs[k.Tag]; ok {
				if r, err := proof.Open(sr, to, pk); err == nil && r.Digest == k.Digest {
					continue
				}
			}
			pair, err := s.Backend.Read(ctx, k.Name)
			if err != nil {
				return nil, fmt.Errorf("send keys to %s: %w", to, err)
			}
			out = append(out, pair)
		}
	}
	return out, nil
}

// Send seals pairs for site `to` and stores the bundle under the next
// sequence number, in one Txn with the sender's counter so two senders
// never reuse a number.
func (s *Sender) Send(ctx context.Context, to string, pairs []inventory.Pair) (bundle.Header, error) {
	p := PathsFor(s.Keys)
	rcpt, err := Recipient(s.Cfg, to)
	if err != nil {
		return bundle.Header{}, fmt.Errorf("send keys to %s: %w", to, err)
	}
	pending, err := s.KV.Get(ctx, p.BundlesFrom(to, s.Site), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return bundle.Header{}, fmt.Errorf("send keys to %s: %w", to, err)
	}
	if pending.Count > 0 {
		return bundle.Header{}, fmt.Errorf("send keys to %s: %w", to, ErrPending)
	}
	for attempt := 0; attempt < 5; attempt++ {
		sentKey, accKey := p.SentSeq(to, s.Site), p.AcceptedSeq(to, s.Site)
		resp, err := s.KV.Txn(ctx).Then(clientv3.OpGet(sentKey), clientv3.OpGet(accKey)).Commit()
		if err != nil {
			return bundle.Header{}, fmt.Errorf("send keys to %s: read sequence: %w", to, err)
		}
		var sentRev int64
		var seq uint64
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			sentRev = kvs[0].ModRevision
			seq, _ = strconv.ParseUint(string(kvs[0].Value), 10, 64)
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			// The receiver's record wins if the counter was lost: a
			// seq at or below it would be refused as a replay.
			if acc, _ := strconv.ParseUint(string(kvs[0].Value), 10, 64); acc > seq {
				seq = acc
			}
		}
		seq++
		env, h, err := bundle.Seal(bundle.Header{From: s.Site, To: to, Seq: seq, Time: time.Now().UTC()}, pairs, rcpt, s.ID.Signing, s.Cfg.Keys.MaxBytes())
		if err != nil {
			return bundle.Header{}, err
		}
		tx, err := s.KV.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(sentKey), "=", sentRev)).
			Then(clientv3.OpPut(sentKey, strconv.FormatUint(seq, 10)), clientv3.OpPut(p.Bundle(to, s.Site, seq), string(env))).
			Commit()
		if err != nil {
			return bundle.Header{}, fmt.Errorf("send %s: %w", h, err)
		}
		if !tx.Succeeded {
			continue
		}
		s.Log.Info("key bundle sent", "to", to, "seq", seq, "keys", h.Keys, "bytes", len(env))
		if s.Audit != nil {
			if _, err := s.Audit.Append(ctx, audit.Entry{Who: "agent " + s.Site, Action: "keys.bundle.send", Target: to, Result: "ok",
				Detail: map[string]string{"seq": strconv.FormatUint(seq, 10), "keys": strings.Join(h.Keys, ","), "ciphertext_sha256": h.CiphertextSHA256}}); err != nil {
				s.Log.Warn("audit key bundle", "err", err)
			}
		}
		return h, nil
	}
	return bundle.Header{}, fmt.Errorf("send keys to %s: sequence counter kept changing: %w", to, store.ErrConflict)
}
