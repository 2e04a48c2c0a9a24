package zonepull

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// maxUnsigned is how many messages in a row may come without a TSIG
// (RFC 8945 §5.3.1: "no more than 99"). Knot and BIND use this to save
// signing work on large transfers; miekg's own client rejects it, which is
// one reason this package verifies the stream itself.
const maxUnsigned = 99

// tsigStream verifies the TSIG chain of one multi-message response
// (RFC 8945 §5.3.1). The first message's MAC covers the request MAC, the
// message and the full TSIG variables; each later signed message's MAC
// covers the previous MAC, every unsigned message since, the message
// itself and the TSIG timers only.
type tsigStream struct {
	name     string // canonical key name
	secret   []byte
	prevMAC  []byte // request MAC, then the last verified response MAC
	first    bool
	unsigned [][]byte // raw messages since the last signed one
	now      func() time.Time
}

func newTSIGStream(name string, secret []byte, requestMAC []byte) *tsigStream {
	return &tsigStream{name: dns.CanonicalName(name), secret: secret, prevMAC: requestMAC, first: true, now: time.Now}
}

var (
	errNoTSIG      = errors.New("message carries no TSIG")
	errBadMAC      = errors.New("TSIG MAC does not verify")
	errTooUnsigned = fmt.Errorf("more than %d consecutive messages without TSIG", maxUnsigned)
)

// verify checks one raw response message. It reports whether the message
// was signed; an unsigned message is accepted provisionally (its bytes go
// into the next signed message's MAC) except as the first message.
// The caller must also require that the last message was signed.
func (s *tsigStream) verify(raw []byte) (signed bool, err error) {
	stripped, t, err := splitTSIG(raw)
	if err != nil {
		return false, err
	}
	if t == nil {
		if s.first {
			return false, errNoTSIG
		}
		if len(s.unsigned) == maxUnsigned {
			return false, errTooUnsigned
		}
		s.unsigned = append(s.unsigned, append([]byte(nil), raw...))
		return false, nil
	}
	if dns.CanonicalName(t.Hdr.Name) != s.name {
		return true, fmt.Errorf("TSIG signed with key %s, want %s", t.Hdr.Name, s.name)
	}
	if dns.CanonicalName(t.Algorithm) != dns.HmacSHA256 {
		return true, fmt.Errorf("TSIG algorithm %s, want hmac-sha256", t.Algorithm)
	}
	if t.Error != dns.RcodeSuccess {
		return true, fmt.Errorf("TSIG error %s from the primary", dns.RcodeToString[int(t.Error)])
	}
	mac, err := hex.DecodeString(t.MAC)
	if err != nil {
		return true, errBadMAC
	}

	// The MAC is over the message as it was before the TSIG was added:
	// ARCOUNT one less and the original ID (RFC 8945 §4.3.1).
	binary.BigEndian.PutUint16(stripped[0:2], t.OrigId)
	binary.BigEndian.PutUint16(stripped[10:12], binary.BigEndian.Uint16(stripped[10:12])-1)

	h := hmac.New(sha256.New, s.secret)
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(len(s.prevMAC)))
	h.Write(b[:])
	h.Write(s.prevMAC)
	for _, u := range s.unsigned {
		h.Write(u)
	}
	h.Write(stripped)
	if s.first {
		writeVariables(h.Write, t)
	} else {
		writeTimers(h.Write, t)
	}
	if !hmac.Equal(h.Sum(nil), mac) {
		return true, errBadMAC
	}
	// Time is checked after the MAC (RFC 8945 §5.2.3), so an attacker
	// cannot learn our clock from forged messages.
	now := uint64(s.now().Unix())
	skew := max(now, t.TimeSigned) - min(now, t.TimeSigned)
	if skew > uint64(t.Fudge) {
		return true, fmt.Errorf("TSIG time %d is %ds away from ours, fudge %ds", t.TimeSigned, skew, t.Fudge)
	}
	s.prevMAC, s.unsigned, s.first = mac, nil, false
	return true, nil
}

// writeVariables writes the TSIG variables of RFC 8945 §4.3.3: key name
// and algorithm in canonical wire form, class ANY, TTL 0, time, fudge,
// error, other data.
func writeVariables(w func([]byte) (int, error), t *dns.TSIG) {
	w(wireName(t.Hdr.Name))
	var ct [6]byte
	binary.BigEndian.PutUint16(ct[0:2], dns.ClassANY)
	binary.BigEndian.PutUint32(ct[2:6], t.Hdr.Ttl)
	w(ct[:])
	w(wireName(t.Algorithm))
	writeTimers(w, t)
	other, _ := hex.DecodeString(t.OtherData)
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:2], t.Error)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(other)))
	w(b[:])
	w(other)
}

func writeTimers(w func([]byte) (int, error), t *dns.TSIG) {
	var b [8]byte
	b[0], b[1] = byte(t.TimeSigned>>40), byte(t.TimeSigned>>32)
	binary.BigEndian.PutUint32(b[2:6], uint32(t.TimeSigned))
	binary.BigEndian.PutUint16(b[6:8], t.Fudge)
	w(b[:])
}

func wireName(name string) []byte {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.CanonicalName(name), buf, 0, nil, false)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// splitTSIG finds the TSIG RR, which must be the last RR of the message
// (RFC 8945 §5.1). It returns a copy of the message without it, and the
// TSIG; or the message unchanged and nil if it has none.
func splitTSIG(raw []byte) ([]byte, *dns.TSIG, error) {
	if len(raw) < 12 {
		return nil, nil, dns.ErrShortRead
	}
	qd := int(binary.BigEndian.Uint16(raw[4:6]))
	rrs := int(binary.BigEndian.Uint16(raw[6:8])) + int(binary.BigEndian.Uint16(raw[8:10])) + int(binary.BigEndian.Uint16(raw[10:12]))
	off := 12
	var err error
	for range qd {
		if _, off, err = dns.UnpackDomainName(raw, off); err != nil {
			return nil, nil, fmt.Errorf("question: %w", err)
		}
		off += 4
	}
	last := -1
	for range rrs {
		last = off
		if _, off, err = dns.UnpackDomainName(raw, off); err != nil {
			return nil, nil, fmt.Errorf("record owner: %w", err)
		}
		if off+10 > len(raw) {
			return nil, nil, dns.ErrShortRead
		}
		off += 10 + int(binary.BigEndian.Uint16(raw[off+8:off+10]))
		if off > len(raw) {
			return nil, nil, dns.ErrShortRead
		}
	}
	if last < 0 || binary.BigEndian.Uint16(raw[10:12]) == 0 {
		return raw, nil, nil
	}
	rr, _, err := dns.UnpackRR(raw, last)
	if err != nil {
		return nil, nil, fmt.Errorf("last additional record: %w", err)
	}
	t, ok := rr.(*dns.TSIG)
	if !ok {
		return raw, nil, nil
	}
	return append([]byte(nil), raw[:last]...), t, nil
}
