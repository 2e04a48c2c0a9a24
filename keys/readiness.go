package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regdr/regdr/internal/config"
	"github.com/regdr/regdr/internal/store"
	"github.com/regdr/regdr/keys/inventory"
	"github.com/regdr/regdr/keys/proof"
)

// Per-key states, as Readiness and Status report them.
const (
	// StateVerified: a receipt signed by the site proves it signs with
	// exactly this key.
	StateVerified = "verified"
	// StatePresent: the site holds the key (its inventory says so) but
	// has not proved it with a receipt; the origin site of a key is
	// always "present".
	StatePresent = "present"
	// StateMissing: no receipt and not in the site's inventory.
	StateMissing = "missing"
	// StateMismatch: the site's private key does not match the DNSKEY,
	// or its receipt is for another key or does not verify.
	StateMismatch = "mismatch"
)

// KeyReadiness is one DNSKEY at one site.
type KeyReadiness struct {
	Tag       uint16 `json:"tag"`
	Algorithm uint8  `json:"algorithm"`
	KSK       bool   `json:"ksk"`
	Digest    string `json:"digest"`
	State     string `json:"state"`
	// Detail says why a key is not verified, or what it was verified
	// against.
	Detail string    `json:"detail,omitempty"`
	Proved time.Time `json:"proved,omitempty"`
}

// Report is whether site can sign zone with every key of a DNSKEY set.
type Report struct {
	Site  string         `json:"site"`
	Zone  string         `json:"zone"`
	Ready bool           `json:"ready"`
	Keys  []KeyReadiness `json:"keys"`
}

// Problems lists the keys that are not verified, one sentence each.
func (r Report) Problems() []string {
	var out []string
	for _, k := range r.Keys {
		if k.State == StateVerified {
			continue
		}
		role := "ZSK"
		if k.KSK {
			role = "KSK"
		}
		out = append(out, fmt.Sprintf("DNSKEY tag %d (%s, algorithm %d) of %s is %s at %s: %s", k.Tag, role, k.Algorithm, r.Zone, k.State, r.Site, k.Detail))
	}
	return out
}

func (r Report) String() string {
	if r.Ready {
		return fmt.Sprintf("%s can sign %s with all %d key(s)", r.Site, r.Zone, len(r.Keys))
	}
	return strings.Join(r.Problems(), "; ")
}

// Readiness checks, for each DNSKEY, that site holds a receipt signed
// with its identity from the config whose proof verifies with that DNSKEY
// at now. It is what the key-readiness gate and the failover preflight
// decide on. An error means etcd could not be read; an unproved key is a
// Report that is not Ready.
func Readiness(ctx context.Context, kv clientv3.KV, keys store.Keys, cfg *config.Config, site, zone string, dnskeys []*dns.DNSKEY) (Report, error) {
	zone = store.CanonicalZone(zone)
	rep := Report{Site: site, Zone: zone, Ready: true}
	receipts, err := readReceipts(ctx, kv, PathsFor(keys), site, zone)
	if err != nil {
		return rep, err
	}
	pk, known := Signers(cfg)(site)
	now := time.Now()
	for _, dk := range dnskeys {
		k := KeyReadiness{Tag: dk.KeyTag(), Algorithm: dk.Algorithm, KSK: dk.Flags&dns.SEP != 0, Digest: inventory.Digest(dk)}
		s, found := receipts[k.Tag]
		switch {
		case !known:
			k.State, k.Detail = StateMissing, "site has no identity in the config, so no receipt can be trusted"
		case !found:
			k.State, k.Detail = StateMissing, "no possession receipt"
		default:
			r, err := proof.Open(s, site, pk)
			switch {
			case err != nil:
				k.State, k.Detail = StateMismatch, err.Error()
			case r.Digest != k.Digest:
				k.State, k.Detail = StateMismatch, fmt.Sprintf("receipt is for another key with this tag (digest %.12s, DNSKEY %.12s)", r.Digest, k.Digest)
			default:
				if err := r.Check(dk, now); err != nil {
					k.State, k.Detail = StateMismatch, err.Error()
				} else {
					k.State, k.Detail, k.Proved = StateVerified, "against "+r.Against+" "+r.AgainstDetail, r.Time
				}
			}
		}
		if k.State != StateVerified {
			rep.Ready = false
		}
		rep.Keys = append(rep.Keys, k)
	}
	return rep, nil
}

// readReceipts returns site's signed receipts for zone by tag.
func readReceipts(ctx context.Context, kv clientv3.KV, p Paths, site, zone string) (map[uint16]proof.Signed, error) {
	prefix := p.ZoneReceipts(site, zone)
	resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read receipts of %s for %s: %w", site, zone, err)
	}
	out := map[uint16]proof.Signed{}
	for _, kvp := range resp.Kvs {
		var s proof.Signed
		if err := json.Unmarshal(kvp.Value, &s); err != nil {
			continue // reported as missing; a garbage value proves nothing
		}
		var tag uint16
		if _, err := fmt.Sscanf(strings.TrimPrefix(string(kvp.Key), prefix), "%05d", &tag); err != nil {
			continue
		}
		out[tag] = s
	}
	return out, nil
}

// DNSKEYs returns the DNSKEY records at the apex of a zone's records.
func DNSKEYs(origin string, rrs []dns.RR) []*dns.DNSKEY {
	var out []*dns.DNSKEY
	for _, rr := range rrs {
		if dk, ok := rr.(*dns.DNSKEY); ok && strings.EqualFold(dk.Hdr.Name, origin) {
			out = append(out, dk)
		}
	}
	return out
}
