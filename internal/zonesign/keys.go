package zonesign

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultAlgorithm is ECDSAP256SHA256 (13): small signatures and fast
// signing, the algorithm most TLDs sign with today (RFC 8624 "MUST").
const DefaultAlgorithm = dns.ECDSAP256SHA256

// rsaBits is the RSASHA256 modulus size: 2048 is the RFC 8624 floor that
// every validator accepts; larger keys only make responses bigger.
const rsaBits = 2048

// dnskeyTTL is the TTL written into generated .key files. Sign sets the
// published TTL itself (Options.DNSKEYTTL); this one only matters to tools
// that read the file.
const dnskeyTTL = 3600

// Key is one DNSSEC key pair of a zone.
//
// Signer holds private material: never print or log it. Key's String,
// GoString and LogValue show public data only, so %v, %#v and slog are safe.
type Key struct {
	DNSKEY *dns.DNSKEY
	Signer crypto.Signer
	KSK    bool   // SEP flag set (flags 257): signs the DNSKEY RRset
	Tag    uint16 // key tag (RFC 4034 Appendix B)
	File   string // path of the .key file; the .private sits next to it
}

// String names the key without any private material.
func (k *Key) String() string {
	role := "ZSK"
	if k.KSK {
		role = "KSK"
	}
	if k.DNSKEY == nil {
		return role + " (no DNSKEY)"
	}
	return fmt.Sprintf("%s %s alg %d tag %d", role, k.DNSKEY.Hdr.Name, k.DNSKEY.Algorithm, k.Tag)
}

// GoString keeps %#v from dumping the private key.
func (k *Key) GoString() string { return "zonesign.Key{" + k.String() + "}" }

// LogValue keeps slog from dumping the private key.
func (k *Key) LogValue() slog.Value {
	if k.DNSKEY == nil {
		return slog.StringValue(k.String())
	}
	return slog.GroupValue(
		slog.String("zone", k.DNSKEY.Hdr.Name),
		slog.Int("algorithm", int(k.DNSKEY.Algorithm)),
		slog.Int("tag", int(k.Tag)),
		slog.Bool("ksk", k.KSK),
		slog.String("file", k.File),
	)
}

// keyBaseName is BIND's file name stem: K<origin>+<alg>+<tag>, origin with
// its trailing dot (dnssec-keygen writes "Kexample.+013+12345").
func keyBaseName(origin string, alg uint8, tag uint16) string {
	return fmt.Sprintf("K%s+%03d+%05d", origin, alg, tag)
}

// GenerateKey creates a new key pair for origin in dir and writes it as
// BIND does: K<origin>+<alg>+<tag>.key (0644) and .private (0600). alg 0
// means DefaultAlgorithm; ED25519 (15) and RSASHA256 (8, 2048 bits) are
// also supported. ksk selects flags 257 (KSK) over 256 (ZSK).
//
// The .private file is written first and the .key last, each by temp file,
// fsync and rename, so LoadKeys (which looks for .key files) never finds a
// key whose private half is missing or torn.
func GenerateKey(dir, origin string, alg uint8, ksk bool) (*Key, error) {
	if !dns.IsFqdn(origin) {
		return nil, fmt.Errorf("generate key: origin %q is not absolute (needs a trailing dot)", origin)
	}
	origin = dns.CanonicalName(origin)
	if alg == 0 {
		alg = DefaultAlgorithm
	}
	bits := 256
	switch alg {
	case dns.ECDSAP256SHA256, dns.ED25519:
	case dns.RSASHA256:
		bits = rsaBits
	default:
		return nil, fmt.Errorf("generate key for %s: algorithm %d not supported (use 13, 15 or 8)", origin, alg)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("generate key for %s: key directory: %w", origin, err)
	}
	flags := uint16(dns.ZONE)
	if ksk {
		flags |= dns.SEP
	}
	// A new key whose tag collides with a key already in dir would
	// overwrite it; tags are 16 bits, so retry instead.
	for range 16 {
		k := &dns.DNSKEY{
			Hdr:       dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: dnskeyTTL},
			Flags:     flags,
			Protocol:  3,
			Algorithm: alg,
		}
		priv, err := k.Generate(bits)
		if err != nil {
			return nil, fmt.Errorf("generate %d-bit algorithm %d key for %s: %w", bits, alg, origin, err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("generate key for %s: private key of type %T cannot sign", origin, priv)
		}
		tag := k.KeyTag()
		base := filepath.Join(dir, keyBaseName(origin, alg, tag))
		if exists(base+".key") || exists(base+".private") {
			continue
		}
		if err := writeFileAtomic(base+".private", 0o600, func(w io.Writer) error {
			_, err := io.WriteString(w, k.PrivateKeyString(priv))
			return err
		}); err != nil {
			return nil, fmt.Errorf("write private key of %s tag %d: %w", origin, tag, err)
		}
		role := "zone-signing"
		if ksk {
			role = "key-signing"
		}
		pub := fmt.Sprintf("; This is a %s key, keyid %d, for %s\n; Created: %s\n%s\n",
			role, tag, origin, time.Now().UTC().Format("20060102150405"), k.String())
		if err := writeFileAtomic(base+".key", 0o644, func(w io.Writer) error {
			_, err := io.WriteString(w, pub)
			return err
		}); err != nil {
			return nil, fmt.Errorf("write public key of %s tag %d: %w", origin, tag, err)
		}
		return &Key{DNSKEY: k, Signer: signer, KSK: ksk, Tag: tag, File: base + ".key"}, nil
	}
	return nil, fmt.Errorf("generate key for %s in %s: 16 key tag collisions in a row", origin, dir)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// LoadKeys reads every K<origin>+*.key in dir with its .private. It
// refuses a .private that group or other may access (a secret that every
// local user can read is already leaked), a DNSKEY for another name, and a
// private key that does not match its DNSKEY. Errors name the file. Keys
// come back KSKs first, then by algorithm and tag.
func LoadKeys(dir, origin string) ([]*Key, error) {
	if !dns.IsFqdn(origin) {
		return nil, fmt.Errorf("load keys: origin %q is not absolute (needs a trailing dot)", origin)
	}
	origin = dns.CanonicalName(origin)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load keys for %s: %w", origin, err)
	}
	prefix := "k" + origin + "+" // compared lower-cased
	var keys []*Key
	for _, e := range entries {
		name := e.Name()
		// Origins are case-insensitive; file names from other tools may
		// keep the operator's case.
		if e.IsDir() || !strings.HasSuffix(name, ".key") || !strings.HasPrefix(strings.ToLower(name), prefix) {
			continue
		}
		k, err := loadKey(filepath.Join(dir, name), origin)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *Key) int {
		if a.KSK != b.KSK {
			if a.KSK {
				return -1
			}
			return 1
		}
		if a.DNSKEY.Algorithm != b.DNSKEY.Algorithm {
			return int(a.DNSKEY.Algorithm) - int(b.DNSKEY.Algorithm)
		}
		return int(a.Tag) - int(b.Tag)
	})
	return keys, nil
}

func loadKey(keyFile, origin string) (*Key, error) {
	f, err := os.Open(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	rr, err := dns.ReadRR(f, keyFile)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", keyFile, err)
	}
	dk, ok := rr.(*dns.DNSKEY)
	if !ok || dk == nil {
		return nil, fmt.Errorf("load key %s: no DNSKEY record in the file", keyFile)
	}
	if !strings.EqualFold(dk.Hdr.Name, origin) {
		return nil, fmt.Errorf("load key %s: DNSKEY owner %s is not %s", keyFile, dk.Hdr.Name, origin)
	}
	dk.Hdr.Name = origin
	if dk.Flags&dns.ZONE == 0 {
		return nil, fmt.Errorf("load key %s: flags %d lack the zone key bit", keyFile, dk.Flags)
	}

	privFile := strings.TrimSuffix(keyFile, ".key") + ".private"
	st, err := os.Stat(privFile)
	if err != nil {
		return nil, fmt.Errorf("load key %s: private key: %w", keyFile, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load key: %s has mode %04o: group/other may access it; chmod 600 it (and consider the key exposed)", privFile, perm)
	}
	pf, err := os.Open(privFile)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	priv, err := dk.ReadPrivateKey(pf, privFile)
	pf.Close()
	if err != nil {
		// miekg/dns parse errors carry the file name and position, never
		// the key material.
		return nil, fmt.Errorf("load key: read %s: %w", privFile, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load key: %s: private key of type %T cannot sign", privFile, priv)
	}
	k := &Key{DNSKEY: dk, Signer: signer, KSK: dk.Flags&dns.SEP != 0, Tag: dk.KeyTag(), File: keyFile}
	if err := k.proveMatch(); err != nil {
		return nil, fmt.Errorf("load key: %s does not match %s: %w", privFile, keyFile, err)
	}
	return k, nil
}

// proveMatch signs a probe RRset with the private key and verifies it with
// the DNSKEY: the only check that catches a .private swapped or copied
// from another key, which would otherwise be found by validators after
// publication.
func (k *Key) proveMatch() error {
	probe := []dns.RR{&dns.TXT{
		Hdr: dns.RR_Header{Name: k.DNSKEY.Hdr.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 0},
		Txt: []string{"regdr key possession probe"},
	}}
	now := time.Now()
	sig := &dns.RRSIG{
		Hdr:        dns.RR_Header{Name: k.DNSKEY.Hdr.Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET},
		Algorithm:  k.DNSKEY.Algorithm,
		KeyTag:     k.Tag,
		SignerName: k.DNSKEY.Hdr.Name,
		Inception:  uint32(now.Add(-time.Hour).Unix()),
		Expiration: uint32(now.Add(time.Hour).Unix()),
	}
	if err := sig.Sign(k.Signer, probe); err != nil {
		return fmt.Errorf("sign probe: %w", err)
	}
	if err := sig.Verify(k.DNSKEY, probe); err != nil {
		return fmt.Errorf("verify probe: %w", err)
	}
	return nil
}

// writeFileAtomic writes path so that a reader sees either the old file or
// the whole new one: temp file in the same directory (rename is atomic
// only within one file system), fsync, rename, fsync the directory so the
// rename itself survives a crash.
func writeFileAtomic(path string, mode fs.FileMode, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes 0600 files; set the final mode before any data is
	// written so a secret is never briefly world-readable.
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("chmod temp file for %s: %w", path, err)
	}
	if err := write(tmp); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// publicEqual reports whether two DNSKEYs carry the same key (flags,
// protocol, algorithm and public key), ignoring owner case and TTL.
func publicEqual(a, b *dns.DNSKEY) bool {
	return a.Flags == b.Flags && a.Protocol == b.Protocol && a.Algorithm == b.Algorithm &&
		bytes.Equal([]byte(a.PublicKey), []byte(b.PublicKey))
}
