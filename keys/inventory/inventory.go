// Package inventory lists the DNSSEC key pairs a site holds. Keys are read
// through a Backend so that an HSM (PKCS#11) backend can be added beside
// the BIND key directory without changing the callers: a Backend answers
// "which keys do you have" and "give me this pair's files", nothing more.
package inventory

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Key states as Inventory reports them.
const (
	// StateOK: the private key signs what its DNSKEY verifies.
	StateOK = "ok"
	// StateMismatch: the private key does not match its DNSKEY (a
	// .private copied from another key), or cannot be read.
	StateMismatch = "mismatch"
)

// Key is the public description of one key pair: safe to log, store in
// etcd and show. It never holds private material.
type Key struct {
	Zone      string `json:"zone"` // canonical, lower case with the final dot
	Tag       uint16 `json:"tag"`
	Algorithm uint8  `json:"algorithm"`
	KSK       bool   `json:"ksk"` // SEP flag
	// Digest is the lower-case hex SHA-256 of the DNSKEY RDATA in wire
	// form: two keys with one tag (tags collide) still differ here.
	Digest string `json:"digest"`
	// Name is the BIND file stem, K<zone>+<alg>+<tag>.
	Name string `json:"name"`
	// State is StateOK or StateMismatch; Problem says why it is not ok
	// (never quoting key material).
	State   string `json:"state"`
	Problem string `json:"problem,omitempty"`
	// Timing holds BIND's timing metadata (Created, Publish, Activate,
	// Inactive, Delete, ...) from the .key comments or .private fields,
	// when present.
	Timing map[string]time.Time `json:"timing,omitempty"`
}

// Role is "KSK" or "ZSK".
func (k Key) Role() string {
	if k.KSK {
		return "KSK"
	}
	return "ZSK"
}

func (k Key) String() string {
	return fmt.Sprintf("%s %s alg %d tag %d", k.Role(), k.Zone, k.Algorithm, k.Tag)
}

// Pair is one key pair's files as BIND writes them. Private is secret:
// never log or print it.
type Pair struct {
	Key     Key
	Public  []byte // the .key file
	Private []byte // the .private file
}

// Backend is where a site keeps its keys. Implementations must be safe for
// concurrent use; List and Read may block on I/O and honour ctx.
type Backend interface {
	// List returns the public description of every key of zone.
	List(ctx context.Context, zone string) ([]Key, error)
	// Read returns the files of the key named name (Key.Name).
	Read(ctx context.Context, name string) (Pair, error)
}

// ErrNotFound is returned by Read for a key the backend does not hold.
var ErrNotFound = errors.New("key not found")

// Dir is the BIND key directory backend: K<zone>+<alg>+<tag>.key and
// .private files in one directory.
type Dir struct{ Path string }

// List reads every K<zone>+*.key in the directory with its .private. A
// pair whose private half is missing is left out (a generator writes the
// .private first, so that is a key still being written); one whose private
// key does not match is listed with StateMismatch.
func (d Dir) List(ctx context.Context, zone string) ([]Key, error) {
	zone = dns.CanonicalName(dns.Fqdn(zone))
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s in %s: %w", zone, d.Path, err)
	}
	prefix := "k" + zone + "+"
	var out []Key
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".key") || !strings.HasPrefix(strings.ToLower(name), prefix) {
			continue
		}
		p, err := d.Read(ctx, strings.TrimSuffix(name, ".key"))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p.Key)
	}
	Sort(out)
	return out, nil
}

// Read reads the pair named name and describes it.
func (d Dir) Read(ctx context.Context, name string) (Pair, error) {
	if name == "" || strings.ContainsAny(name, "/\\") || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return Pair{}, fmt.Errorf("read key %q: not a key file name", name)
	}
	base := filepath.Join(d.Path, name)
	pub, err := os.ReadFile(base + ".key")
	if errors.Is(err, os.ErrNotExist) {
		return Pair{}, fmt.Errorf("read key %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Pair{}, fmt.Errorf("read key %s: %w", name, err)
	}
	priv, err := os.ReadFile(base + ".private")
	if errors.Is(err, os.ErrNotExist) {
		return Pair{}, fmt.Errorf("read key %s: private half: %w", name, ErrNotFound)
	}
	if err != nil {
		return Pair{}, fmt.Errorf("read key %s: private half: %w", name, err)
	}
	k, err := Describe(name, pub, priv)
	if err != nil {
		return Pair{}, err
	}
	return Pair{Key: k, Public: pub, Private: priv}, nil
}

// Describe parses a pair's files. A .key that does not parse is an error;
// a .private that does not parse or does not match is StateMismatch (the
// key exists, but this site cannot sign with it).
func Describe(name string, pub, priv []byte) (Key, error) {
	dk, err := ParseDNSKEY(pub, name+".key")
	if err != nil {
		return Key{}, err
	}
	k := Key{
		Zone:      dns.CanonicalName(dk.Hdr.Name),
		Tag:       dk.KeyTag(),
		Algorithm: dk.Algorithm,
		KSK:       dk.Flags&dns.SEP != 0,
		Digest:    Digest(dk),
		Name:      name,
		State:     StateOK,
	}
	k.Timing = timing(pub, priv)
	if want := StemName(k.Zone, k.Algorithm, k.Tag); !strings.EqualFold(want, name) {
		return Key{}, fmt.Errorf("read key %s: the DNSKEY inside is %s (zone %s alg %d tag %d)", name, want, k.Zone, k.Algorithm, k.Tag)
	}
	signer, err := ParsePrivate(dk, priv, name+".private")
	if err != nil {
		k.State, k.Problem = StateMismatch, err.Error()
		return k, nil
	}
	if err := ProveMatch(dk, signer); err != nil {
		k.State, k.Problem = StateMismatch, "private key does not match its DNSKEY: "+err.Error()
	}
	return k, nil
}

// ParseDNSKEY reads the DNSKEY record of a .key file.
func ParseDNSKEY(pub []byte, file string) (*dns.DNSKEY, error) {
	rr, err := dns.ReadRR(bytes.NewReader(pub), file)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", file, err)
	}
	dk, ok := rr.(*dns.DNSKEY)
	if !ok || dk == nil {
		return nil, fmt.Errorf("read key %s: no DNSKEY record in the file", file)
	}
	if dk.Flags&dns.ZONE == 0 {
		return nil, fmt.Errorf("read key %s: flags %d lack the zone key bit", file, dk.Flags)
	}
	return dk, nil
}

// ParsePrivate reads a .private file for dk. Errors name the file and
// position only, never the content.
func ParsePrivate(dk *dns.DNSKEY, priv []byte, file string) (crypto.Signer, error) {
	pk, err := dk.NewPrivateKey(string(priv))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, scrub(err))
	}
	s, ok := pk.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("read %s: private key of type %T cannot sign", file, pk)
	}
	return s, nil
}

// scrub keeps only the error's kind: miekg/dns private key parse errors
// may quote the offending token, which could be key material.
func scrub(err error) error {
	var pe *dns.ParseError
	if errors.As(err, &pe) {
		return errors.New("private key file does not parse")
	}
	return err
}

// ProveMatch signs a probe RRset with signer and verifies it with dk: the
// only check that catches a .private belonging to another key.
func ProveMatch(dk *dns.DNSKEY, signer crypto.Signer) error {
	probe := []dns.RR{&dns.TXT{
		Hdr: dns.RR_Header{Name: dns.CanonicalName(dk.Hdr.Name), Rrtype: dns.TypeTXT, Class: dns.ClassINET},
		Txt: []string{"regdr key inventory probe"},
	}}
	now := time.Now()
	sig := &dns.RRSIG{
		Hdr:        dns.RR_Header{Name: probe[0].Header().Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET},
		Algorithm:  dk.Algorithm,
		KeyTag:     dk.KeyTag(),
		SignerName: dns.CanonicalName(dk.Hdr.Name),
		Inception:  uint32(now.Add(-time.Hour).Unix()),
		Expiration: uint32(now.Add(time.Hour).Unix()),
	}
	if err := sig.Sign(signer, probe); err != nil {
		return fmt.Errorf("sign probe: %w", err)
	}
	if err := sig.Verify(dk, probe); err != nil {
		return fmt.Errorf("verify probe: %w", err)
	}
	return nil
}

// Digest is the lower-case hex SHA-256 of dk's RDATA in wire form.
func Digest(dk *dns.DNSKEY) string {
	c := *dk
	c.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET}
	buf := make([]byte, dns.Len(&c)+16)
	n, err := dns.PackRR(&c, buf, 0, nil, false)
	if err != nil {
		// A DNSKEY that parsed always packs; hash the text as a
		// fallback so the digest still identifies the key.
		sum := sha256.Sum256([]byte(dk.PublicKey))
		return hex.EncodeToString(sum[:])
	}
	// Skip the header: root name (1), type, class, ttl, rdlength (10).
	sum := sha256.Sum256(buf[11:n])
	return hex.EncodeToString(sum[:])
}

// StemName is BIND's file stem K<zone>+<alg>+<tag>.
func StemName(zone string, alg uint8, tag uint16) string {
	return fmt.Sprintf("K%s+%03d+%05d", dns.CanonicalName(dns.Fqdn(zone)), alg, tag)
}

// Sort orders keys by zone, KSKs first, then algorithm and tag.
func Sort(ks []Key) {
	slices.SortFunc(ks, func(a, b Key) int {
		if c := strings.Compare(a.Zone, b.Zone); c != 0 {
			return c
		}
		if a.KSK != b.KSK {
			if a.KSK {
				return -1
			}
			return 1
		}
		if a.Algorithm != b.Algorithm {
			return int(a.Algorithm) - int(b.Algorithm)
		}
		if a.Tag != b.Tag {
			return int(a.Tag) - int(b.Tag)
		}
		return strings.Compare(a.Digest, b.Digest)
	})
}

// timingFields are BIND's key timing metadata names.
var timingFields = []string{"Created", "Publish", "Activate", "Revoke", "Inactive", "Delete", "SyncPublish", "SyncDelete"}

// timing reads BIND timing metadata: "; Created: 20260101000000 (...)"
// comments in the .key, and "Created: 20260101000000" lines in the
// .private (only those lines are looked at; nothing else of the private
// file is kept).
func timing(pub, priv []byte) map[string]time.Time {
	out := map[string]time.Time{}
	scan := func(b []byte, comment bool) {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if comment {
				if !strings.HasPrefix(line, ";") {
					continue
				}
				line = strings.TrimSpace(strings.TrimPrefix(line, ";"))
			}
			name, rest, ok := strings.Cut(line, ":")
			if !ok || !slices.Contains(timingFields, name) {
				continue
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				continue
			}
			if t, err := time.Parse("20060102150405", f[0]); err == nil {
				out[name] = t.UTC()
			}
		}
	}
	scan(pub, true)
	scan(priv, false)
	if len(out) == 0 {
		return nil
	}
	return out
}
