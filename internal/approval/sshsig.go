package approval

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Namespace is the SSHSIG namespace of regdr approvals. The namespace is
// inside what is signed, so a signature an operator made for anything else
// (git commits use "git", files "file") can never count as an approval.
const Namespace = "regdr"

// SSHSIG wire constants, from OpenSSH's PROTOCOL.sshsig.
const (
	sigMagic   = "SSHSIG"
	sigVersion = 1

	armorBegin = "-----BEGIN SSH SIGNATURE-----"
	armorEnd   = "-----END SSH SIGNATURE-----"
	// armorWidth is the base64 line length ssh-keygen writes.
	armorWidth = 70
	// maxArmored bounds what the decoder reads. A signature by a 16384-bit
	// RSA key armors to under 6 KiB; anything much larger is not one.
	maxArmored = 64 << 10
	// minRSABits refuses RSA keys weaker than what is still considered safe
	// (OpenSSH's own floor is 1024).
	minRSABits = 2048

	// signHash is what Sign uses, as ssh-keygen does by default.
	signHash = "sha512"
)

// Signature failures. Every error Verify returns wraps ErrBadSignature;
// these name the two cases a caller may want to tell an operator about.
var (
	// ErrBadSignature: the signature is malformed, does not verify, or is
	// not over the expected message.
	ErrBadSignature = errors.New("bad signature")
	// ErrWrongKey: the signature is sound but made with another key than
	// the one expected (another operator's, or one not configured).
	ErrWrongKey = fmt.Errorf("%w: made with another key", ErrBadSignature)
	// ErrWrongNamespace: the signature was made for another purpose.
	ErrWrongNamespace = fmt.Errorf("%w: another namespace", ErrBadSignature)
)

// sigAlgs are the signature formats accepted for each key type. ssh-rsa
// (RSA with SHA-1) is absent on purpose, as in OpenSSH's sshsig; keys not
// listed (certificates, security keys, DSA) are refused.
var sigAlgs = map[string][]string{
	ssh.KeyAlgoED25519:  {ssh.KeyAlgoED25519},
	ssh.KeyAlgoECDSA256: {ssh.KeyAlgoECDSA256},
	ssh.KeyAlgoECDSA384: {ssh.KeyAlgoECDSA384},
	ssh.KeyAlgoECDSA521: {ssh.KeyAlgoECDSA521},
	ssh.KeyAlgoRSA:      {ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
}

// sigBlob is the binary SSHSIG structure:
//
//	byte[6] "SSHSIG"; uint32 version (1); string publickey;
//	string namespace; string reserved (empty); string hash_algorithm;
//	string signature
type sigBlob struct {
	PublicKey []byte // wire form of the signer's public key
	Namespace string
	HashAlg   string // "sha512" or "sha256"
	Signature []byte // wire form of an ssh.Signature
}

// Sign makes an armored SSHSIG signature of msg in namespace, the same
// bytes `ssh-keygen -Y sign -n namespace` would accept for verification.
// RSA keys sign with rsa-sha2-512, so signer must then be an
// ssh.AlgorithmSigner (those from ssh.NewSignerFromKey and ssh-agent are).
func Sign(signer ssh.Signer, namespace string, msg []byte) ([]byte, error) {
	pub := signer.PublicKey()
	if namespace == "" {
		return nil, errors.New("sshsig sign: namespace is empty")
	}
	if err := checkKey(pub); err != nil {
		return nil, fmt.Errorf("sshsig sign: %w", err)
	}
	data := signedData(namespace, signHash, msg)
	var sig *ssh.Signature
	var err error
	if pub.Type() == ssh.KeyAlgoRSA {
		as, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return nil, fmt.Errorf("sshsig sign with %s: signer cannot choose rsa-sha2-512", ssh.FingerprintSHA256(pub))
		}
		sig, err = as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = signer.Sign(rand.Reader, data)
	}
	if err != nil {
		return nil, fmt.Errorf("sshsig sign with %s: %w", ssh.FingerprintSHA256(pub), err)
	}
	armored := encodeArmor(marshalBlob(sigBlob{
		PublicKey: pub.Marshal(),
		Namespace: namespace,
		HashAlg:   signHash,
		Signature: ssh.Marshal(sig),
	}))
	// A signer behind an agent or a token is outside our control; never
	// hand out a signature that would be refused later.
	if err := Verify(pub, namespace, msg, armored); err != nil {
		return nil, fmt.Errorf("sshsig sign with %s: own signature does not verify: %w", ssh.FingerprintSHA256(pub), err)
	}
	return armored, nil
}

// Verify checks that armored is an SSHSIG signature of msg in namespace
// made with pub. Every error wraps ErrBadSignature; a signature by another
// key wraps ErrWrongKey, one for another namespace ErrWrongNamespace.
func Verify(pub ssh.PublicKey, namespace string, msg, armored []byte) error {
	if err := checkKey(pub); err != nil {
		return fmt.Errorf("%w: expected key: %w", ErrBadSignature, err)
	}
	b, err := parseArmored(armored)
	if err != nil {
		return err
	}
	if b.Namespace != namespace {
		return fmt.Errorf("%w: signed for %q, want %q", ErrWrongNamespace, b.Namespace, namespace)
	}
	if !bytes.Equal(b.PublicKey, pub.Marshal()) {
		return fmt.Errorf("%w: want %s", ErrWrongKey, ssh.FingerprintSHA256(pub))
	}
	return verifyBlob(pub, b, namespace, msg)
}

// verifyEmbedded checks armored against the key written inside it and
// returns that key. It proves the signature is sound and over msg, not who
// made it: callers that care (all but Put's pre-store check) use Verify.
func verifyEmbedded(namespace string, msg, armored []byte) (ssh.PublicKey, error) {
	b, err := parseArmored(armored)
	if err != nil {
		return nil, err
	}
	if b.Namespace != namespace {
		return nil, fmt.Errorf("%w: signed for %q, want %q", ErrWrongNamespace, b.Namespace, namespace)
	}
	pub, err := ssh.ParsePublicKey(b.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrBadSignature, err)
	}
	if err := checkKey(pub); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if err := verifyBlob(pub, b, namespace, msg); err != nil {
		return nil, err
	}
	return pub, nil
}

func parseArmored(armored []byte) (sigBlob, error) {
	raw, err := decodeArmor(armored)
	if err != nil {
		return sigBlob{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	b, err := parseBlob(raw)
	if err != nil {
		return sigBlob{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return b, nil
}

// verifyBlob checks b's signature over msg in namespace with pub, which
// the caller has matched to b.PublicKey. The signed data is rebuilt from
// the expected namespace, not the one in the blob, so a missed namespace
// comparison could not let a signature for another purpose through.
func verifyBlob(pub ssh.PublicKey, b sigBlob, namespace string, msg []byte) error {
	var sig ssh.Signature
	if err := ssh.Unmarshal(b.Signature, &sig); err != nil {
		return fmt.Errorf("%w: signature field: %w", ErrBadSignature, err)
	}
	if !slices.Contains(sigAlgs[pub.Type()], sig.Format) {
		return fmt.Errorf("%w: signature algorithm %q not accepted for %s keys", ErrBadSignature, sig.Format, pub.Type())
	}
	// Only security-key signatures carry trailing fields, and those keys
	// are not accepted.
	if len(sig.Rest) != 0 {
		return fmt.Errorf("%w: trailing data in signature field", ErrBadSignature)
	}
	if b.HashAlg != "sha512" && b.HashAlg != "sha256" {
		return fmt.Errorf("%w: hash algorithm %q (want sha512 or sha256)", ErrBadSignature, b.HashAlg)
	}
	if err := pub.Verify(signedData(namespace, b.HashAlg, msg), &sig); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

// checkKey refuses key types and sizes approvals must not rest on.
func checkKey(pub ssh.PublicKey) error {
	if pub == nil {
		return errors.New("no key")
	}
	if _, ok := sigAlgs[pub.Type()]; !ok {
		return fmt.Errorf("key type %s not accepted", pub.Type())
	}
	if pub.Type() == ssh.KeyAlgoRSA {
		ck, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return fmt.Errorf("RSA key %s: cannot read its size", ssh.FingerprintSHA256(pub))
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok || rk.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key %s is shorter than %d bits", ssh.FingerprintSHA256(pub), minRSABits)
		}
	}
	return nil
}

// signedData is what the SSH signature covers (PROTOCOL.sshsig):
//
//	byte[6] "SSHSIG"; string namespace; string reserved (empty);
//	string hash_algorithm; string H(message)
//
// hashAlg must be "sha512" or "sha256" (anything else hashes as sha256,
// and callers refuse it before).
func signedData(namespace, hashAlg string, msg []byte) []byte {
	var h []byte
	if hashAlg == "sha512" {
		s := sha512.Sum512(msg)
		h = s[:]
	} else {
		s := sha256.Sum256(msg)
		h = s[:]
	}
	out := []byte(sigMagic)
	out = appendString(out, []byte(namespace))
	out = appendString(out, nil)
	out = appendString(out, []byte(hashAlg))
	return appendString(out, h)
}

func appendString(out, s []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(len(s)))
	return append(out, s...)
}

func marshalBlob(b sigBlob) []byte {
	out := []byte(sigMagic)
	out = binary.BigEndian.AppendUint32(out, sigVersion)
	out = appendString(out, b.PublicKey)
	out = appendString(out, []byte(b.Namespace))
	out = appendString(out, nil)
	out = appendString(out, []byte(b.HashAlg))
	return appendString(out, b.Signature)
}

// parseBlob decodes the binary SSHSIG structure. It is strict where
// ssh-keygen's output is fixed (version 1, empty reserved field, nothing
// after the signature), so every blob it accepts re-encodes to itself.
func parseBlob(raw []byte) (sigBlob, error) {
	rest, ok := bytes.CutPrefix(raw, []byte(sigMagic))
	if !ok {
		return sigBlob{}, errors.New("not an SSHSIG blob (no magic)")
	}
	if len(rest) < 4 {
		return sigBlob{}, errors.New("SSHSIG blob truncated in version")
	}
	if v := binary.BigEndian.Uint32(rest); v != sigVersion {
		return sigBlob{}, fmt.Errorf("SSHSIG version %d, want %d", v, sigVersion)
	}
	rest = rest[4:]
	var fields [5][]byte
	names := [5]string{"public key", "namespace", "reserved", "hash algorithm", "signature"}
	for i := range fields {
		var err error
		if fields[i], rest, err = readString(rest); err != nil {
			return sigBlob{}, fmt.Errorf("SSHSIG %s: %w", names[i], err)
		}
	}
	if len(rest) != 0 {
		return sigBlob{}, fmt.Errorf("SSHSIG blob has %d trailing bytes", len(rest))
	}
	if len(fields[2]) != 0 {
		return sigBlob{}, errors.New("SSHSIG reserved field is not empty")
	}
	if len(fields[1]) == 0 {
		return sigBlob{}, errors.New("SSHSIG namespace is empty")
	}
	return sigBlob{
		PublicKey: fields[0],
		Namespace: string(fields[1]),
		HashAlg:   string(fields[3]),
		Signature: fields[4],
	}, nil
}

func readString(b []byte) (s, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errors.New("truncated length")
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d exceeds the %d bytes left", n, len(b))
	}
	return b[:n], b[n:], nil
}

// encodeArmor writes blob as ssh-keygen does: base64 in 70-column lines
// between BEGIN and END lines, each line ending in "\n".
func encodeArmor(blob []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(blob)
	var sb strings.Builder
	sb.WriteString(armorBegin + "\n")
	for len(enc) > armorWidth {
		sb.WriteString(enc[:armorWidth] + "\n")
		enc = enc[armorWidth:]
	}
	sb.WriteString(enc + "\n")
	sb.WriteString(armorEnd + "\n")
	return []byte(sb.String())
}

// decodeArmor returns the blob inside an armored signature. Whitespace
// around the armor and line breaks (LF or CRLF) and blanks inside the
// base64 are allowed, as in files copied between systems; anything else
// before BEGIN or after END is refused, so nothing can ride along unseen.
func decodeArmor(armored []byte) ([]byte, error) {
	if len(armored) > maxArmored {
		return nil, fmt.Errorf("armored signature is %d bytes, limit %d", len(armored), maxArmored)
	}
	s := strings.TrimSpace(string(armored))
	body, ok := strings.CutPrefix(s, armorBegin)
	if !ok {
		return nil, fmt.Errorf("armored signature does not start with %q", armorBegin)
	}
	body, ok = strings.CutSuffix(body, armorEnd)
	if !ok {
		return nil, fmt.Errorf("armored signature does not end with %q", armorEnd)
	}
	body = strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r', ' ', '\t':
			return -1
		}
		return r
	}, body)
	if body == "" {
		return nil, errors.New("armored signature is empty")
	}
	// Strict: non-zero padding bits are refused, so each blob has one
	// armored form.
	raw, err := base64.StdEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("armored signature: %w", err)
	}
	return raw, nil
}
