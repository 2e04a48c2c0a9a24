package keys

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/audit"
	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys/bundle"
	"github.com/regdr/regdr/keys/identity"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/keys/proof"
)

// Published returns the DNSKEYs of zone in the site's currently published
// version and a description of that version ("zone test. serial 7"); ok
// is false when nothing is published.
type Published func(zone string) (dnskeys []*dns.DNSKEY, detail string, ok bool)

// Receiver opens the bundles addressed to its site, installs the keys and
// proves possession of them.
type Receiver struct {
	KV   clientv3.KV
	Keys store.Keys
	Cfg  *config.Config
	Site string
	ID   *identity.Private
	// Dir is the site's key directory.
	Dir string
	// Published may be nil (no zone store): proofs are then checked
	// against the sender's .key.
	Published Published
	// Audit may be nil (tests of refusals only).
	Audit *audit.Log
	Log   *slog.Logger
	// Hook is passed to bundle.Install (tests kill the process there).
	Hook bundle.Hook

	mu sync.Mutex
}

// Outcome is what became of one bundle.
type Outcome struct {
	Header    bundle.Header   `json:"header"`
	Installed []string        `json:"installed,omitempty"`
	Present   []string        `json:"present,omitempty"`
	Receipts  []proof.Receipt `json:"receipts,omitempty"`
	// Refused is the reason the bundle was refused ("" if accepted).
	Refused string `json:"refused,omitempty"`
}

// seqFile holds, per sender, the last bundle seq this site accepted. It
// sits in the key directory (never a K*.key name) so it travels with the
// keys it describes: restoring an old key directory also restores the
// record of what it had accepted, and etcd's copy still refuses replays.
const seqFile = ".regdr-bundle-seq.json"

// ProcessPending handles every bundle now waiting for this site, in key
// order, and returns the etcd revision read, to watch from.
func (r *Receiver) ProcessPending(ctx context.Context) ([]Outcome, int64, error) {
	resp, err := r.KV.Get(ctx, PathsFor(r.Keys).Bundles(r.Site), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("read bundles for %s: %w", r.Site, err)
	}
	var out []Outcome
	var errs []error
	for _, kv := range resp.Kvs {
		o, err := r.Handle(ctx, string(kv.Key), kv.Value)
		out = append(out, o)
		if err != nil && o.Refused == "" {
			errs = append(errs, err)
		}
	}
	return out, resp.Header.Revision, errors.Join(errs...)
}

// Handle opens, installs and proves one bundle stored at key. A refused
// bundle is deleted (so the sender may send again), logged and audited,
// and returned with Outcome.Refused set and the refusal as error; nothing
// of it is installed.
func (r *Receiver) Handle(ctx context.Context, key string, val []byte) (Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := PathsFor(r.Keys)
	o := Outcome{}
	to, from, seq, ok := p.ParseBundle(key)
	if !ok || to != r.Site {
		return o, r.refuse(ctx, key, &o, fmt.Errorf("bundle key %s: %w: not a bundle for %s", key, bundle.ErrWrongRecipient, r.Site))
	}
	s, err := bundle.Decode(val, r.Cfg.Keys.MaxBytes())
	if err != nil {
		return o, r.refuse(ctx, key, &o, err)
	}
	o.Header = s.Header
	if s.Header.From != from || s.Header.Seq != seq {
		return o, r.refuse(ctx, key, &o, fmt.Errorf("open %s: %w: stored as %s", s.Header, bundle.ErrMalformed, key))
	}
	last, err := r.lastSeq(ctx, s.Header.From)
	if err != nil {
		return o, err
	}
	if err := s.Verify(r.Site, Signers(r.Cfg), last); err != nil {
		return o, r.refuse(ctx, key, &o, err)
	}
	pairs, err := s.Decrypt(r.ID.Age, r.Cfg.Keys.MaxBytes())
	if err != nil {
		return o, r.refuse(ctx, key, &o, err)
	}
	for _, pr := range pairs {
		if !slices.ContainsFunc(r.Cfg.Zones, func(z config.Zone) bool { return store.CanonicalZone(z.Origin) == pr.Key.Zone }) {
			return o, r.refuse(ctx, key, &o, fmt.Errorf("open %s: %w: %s is not a zone of this deployment", s.Header, bundle.ErrBadKey, pr.Key.Zone))
		}
	}
	if err := bundle.RemoveTemps(r.Dir); err != nil {
		return o, err
	}
	res, err := bundle.Install(r.Dir, pairs, r.Hook)
	o.Installed, o.Present = res.Installed, res.Present
	if errors.Is(err, bundle.ErrTagConflict) || errors.Is(err, bundle.ErrBadKey) {
		return o, r.refuse(ctx, key, &o, err)
	}
	if err != nil {
		return o, fmt.Errorf("install %s: %w", s.Header, err)
	}
	if err := r.saveSeq(ctx, s.Header.From, s.Header.Seq); err != nil {
		return o, err
	}
	r.Log.Info("key bundle installed", "from", s.Header.From, "seq", s.Header.Seq, "installed", res.Installed, "already_present", res.Present)
	r.audit(ctx, audit.Entry{Action: "keys.bundle.install", Target: s.Header.From, Result: "ok", Detail: map[string]string{
		"seq": strconv.FormatUint(s.Header.Seq, 10), "installed": strings.Join(res.Installed, ","),
		"present": strings.Join(res.Present, ","), "ciphertext_sha256": s.CiphertextDigest(),
	}})
	bundleID := fmt.Sprintf("%s seq %d", s.Header.From, s.Header.Seq)
	var errs []error
	for _, pr := range pairs {
		rc, err := r.Prove(ctx, pr, bundleID, s.CiphertextDigest())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		o.Receipts = append(o.Receipts, rc)
	}
	if _, err := r.KV.Delete(ctx, key); err != nil {
		errs = append(errs, fmt.Errorf("delete opened %s: %w", s.Header, err))
	}
	return o, errors.Join(errs...)
}

// Prove signs a fresh challenge with pair's private key, checks it against
// the published DNSKEY (or the pair's own .key when the key is not
// published yet), and stores the signed receipt in etcd and the audit log.
// A key that fails the check is logged, audited and returned as an error
// wrapping proof.ErrMismatch; no receipt is written for it.
//
// The challenge nonce is chosen partly outside the receiver, so a proof
// cannot be made ahead of time: the first 16 bytes are the sender's
// (the bundle's ciphertext hash, given as senderHex) or, for a site's own
// keys, etcd's (the current revision); 16 more are random.
func (r *Receiver) Prove(ctx context.Context, pair inventory.Pair, bundleID, senderHex string) (proof.Receipt, error) {
	dk, err := inventory.ParseDNSKEY(pair.Public, pair.Key.Name+".key")
	if err != nil {
		return proof.Receipt{}, err
	}
	against, kind, detail := dk, proof.AgainstSender, pair.Key.Name+".key from "+bundleID
	if bundleID == "" {
		kind, detail = proof.AgainstOwn, pair.Key.Name+".key in "+r.Dir
	}
	if r.Published != nil {
		if pub, d, ok := r.Published(pair.Key.Zone); ok {
			for _, p := range pub {
				// Same tag and algorithm: that is the DNSKEY resolvers
				// will pick for our signatures, so it is the one the
				// private key must match.
				if p.KeyTag() == dk.KeyTag() && p.Algorithm == dk.Algorithm {
					against, kind, detail = p, proof.AgainstPublished, d
					break
				}
			}
		}
	}
	outside, err := hex.DecodeString(senderHex)
	if err != nil || len(outside) < 16 {
		resp, gerr := r.KV.Get(ctx, PathsFor(r.Keys).Receipts(r.Site), clientv3.WithCountOnly())
		if gerr != nil {
			return proof.Receipt{}, fmt.Errorf("prove %s: etcd revision for the nonce: %w", pair.Key, gerr)
		}
		outside = binary.BigEndian.AppendUint64(make([]byte, 8), uint64(resp.Header.Revision))
	}
	random := make([]byte, 16)
	if _, err := rand.Read(random); err != nil {
		return proof.Receipt{}, fmt.Errorf("prove %s: nonce: %w", pair.Key, err)
	}
	nonce := append(outside[:16:16], random...)
	rc, err := proof.Prove(r.Site, pair, against, kind, detail, nonce, time.Now())
	if err != nil {
		r.Log.Error("possession proof failed", "key", pair.Key.String(), "digest", pair.Key.Digest, "against", kind, "err", err)
		r.audit(ctx, audit.Entry{Action: "keys.proof", Target: pair.Key.Zone, Result: "failed: " + err.Error(), Detail: map[string]string{
			"tag": strconv.Itoa(int(pair.Key.Tag)), "digest": pair.Key.Digest, "against": kind + " " + detail}})
		return rc, err
	}
	rc.Bundle = bundleID
	signed, err := proof.Sign(rc, r.ID.Signing)
	if err != nil {
		return rc, err
	}
	b, err := json.Marshal(signed)
	if err != nil {
		return rc, fmt.Errorf("encode receipt: %w", err)
	}
	if _, err := r.KV.Put(ctx, PathsFor(r.Keys).Receipt(r.Site, rc.Zone, rc.Tag), string(b)); err != nil {
		return rc, fmt.Errorf("store receipt for %s: %w", pair.Key, err)
	}
	r.Log.Info("possession proved", "key", pair.Key.String(), "digest", rc.Digest, "against", kind, "detail", detail)
	r.audit(ctx, audit.Entry{Action: "keys.receipt", Target: rc.Zone, Result: "ok", Detail: map[string]string{
		"tag": strconv.Itoa(int(rc.Tag)), "algorithm": strconv.Itoa(int(rc.Algorithm)), "digest": rc.Digest,
		"against": kind + " " + detail, "bundle": bundleID}})
	return rc, nil
}

// ProveOwn proves every key in the site's own key directory that has no
// receipt from this site yet: keys generated here, or installed by hand.
// The site a key was made at must hold a receipt too, because after a
// failover it is the standby whose receipts the key-readiness gate asks
// for (and it may be down then).
func (r *Receiver) ProveOwn(ctx context.Context, b inventory.Backend) ([]proof.Receipt, error) {
	pk, ok := Signers(r.Cfg)(r.Site)
	if !ok {
		return nil, fmt.Errorf("prove own keys of %s: %w", r.Site, identity.ErrNoIdentity)
	}
	var out []proof.Receipt
	var errs []error
	for _, z := range r.Cfg.Zones {
		zone := store.CanonicalZone(z.Origin)
		ks, err := b.List(ctx, zone)
		if err != nil {
			return out, fmt.Errorf("prove own keys of %s: %w", r.Site, err)
		}
		if len(ks) == 0 {
			continue
		}
		rs, err := readReceipts(ctx, r.KV, PathsFor(r.Keys), r.Site, zone)
		if err != nil {
			return out, err
		}
		for _, k := range ks {
			if k.State != inventory.StateOK {
				continue
			}
			if sr, ok := rs[k.Tag]; ok {
				if rc, err := proof.Open(sr, r.Site, pk); err == nil && rc.Digest == k.Digest {
					continue
				}
			}
			pair, err := b.Read(ctx, k.Name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rc, err := r.Prove(ctx, pair, "", "")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, rc)
		}
	}
	return out, errors.Join(errs...)
}

func (r *Receiver) refuse(ctx context.Context, key string, o *Outcome, err error) error {
	o.Refused = err.Error()
	r.Log.Warn("key bundle refused, nothing installed", "key", key, "err", err)
	r.audit(ctx, audit.Entry{Action: "keys.bundle.refuse", Target: o.Header.From, Result: "refused: " + err.Error(), Detail: map[string]string{
		"etcd_key": key, "seq": strconv.FormatUint(o.Header.Seq, 10)}})
	if _, derr := r.KV.Delete(ctx, key); derr != nil {
		r.Log.Warn("delete refused bundle", "key", key, "err", derr)
	}
	return err
}

func (r *Receiver) audit(ctx context.Context, e audit.Entry) {
	if r.Audit == nil {
		return
	}
	e.Who = "agent " + r.Site
	if _, err := r.Audit.Append(ctx, e); err != nil {
		r.Log.Warn("audit key transport", "action", e.Action, "err", err)
	}
}

// lastSeq is the higher of the local and the etcd record: either alone
// could have been rolled back (a restored disk, a restored etcd).
func (r *Receiver) lastSeq(ctx context.Context, from string) (uint64, error) {
	local, err := r.readLocal()
	if err != nil {
		return 0, err
	}
	resp, err := r.KV.Get(ctx, PathsFor(r.Keys).AcceptedSeq(r.Site, from))
	if err != nil {
		return 0, fmt.Errorf("read accepted bundle seq from %s: %w", from, err)
	}
	last := local[from]
	if len(resp.Kvs) > 0 {
		if n, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64); err == nil && n > last {
			last = n
		}
	}
	return last, nil
}

func (r *Receiver) saveSeq(ctx context.Context, from string, seq uint64) error {
	local, err := r.readLocal()
	if err != nil {
		return err
	}
	local[from] = seq
	b, _ := json.Marshal(local)
	path := filepath.Join(r.Dir, seqFile)
	if err := writeSynced(path, b); err != nil {
		return fmt.Errorf("record accepted bundle seq: %w", err)
	}
	if _, err := r.KV.Put(ctx, PathsFor(r.Keys).AcceptedSeq(r.Site, from), strconv.FormatUint(seq, 10)); err != nil {
		return fmt.Errorf("record accepted bundle seq from %s in etcd: %w", from, err)
	}
	return nil
}

func (r *Receiver) readLocal() (map[string]uint64, error) {
	m := map[string]uint64{}
	b, err := os.ReadFile(filepath.Join(r.Dir, seqFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read accepted bundle seqs: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(r.Dir, seqFile), err)
	}
	return m, nil
}

// writeSynced replaces path by temp file, fsync, rename and directory
// fsync, so a crash leaves the old record or the new one.
func writeSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
