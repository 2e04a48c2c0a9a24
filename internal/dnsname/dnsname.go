// Package dnsname orders domain names canonically (RFC 4034 §6.1). The
// signer (which must emit NSEC chains in this order) and the gates (which
// check them) share one implementation, so they cannot disagree.
package dnsname

import (
	"bytes"
	"fmt"

	"github.com/miekg/dns"
)

// Key returns a byte string whose plain bytewise order is the canonical
// DNS name order: labels compared right to left, each as a lower-cased
// octet string, a shorter label sorting first when it is a prefix of a
// longer one.
//
// Labels are taken from the wire form so that escapes (\. \065) compare by
// the octets they stand for, not by their presentation. Each label is
// emitted with 0x00 escaped as 0x00 0xFF and terminated by 0x00 0x00; the
// terminator then sorts below every octet a label can contain, which is
// exactly the "shorter prefix first" rule.
func Key(name string) (string, error) {
	var wire [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), wire[:], 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("name %q: %w", name, err)
	}
	var starts [128]int
	nl := 0
	for off := 0; off < n && wire[off] != 0; off += 1 + int(wire[off]) {
		starts[nl] = off
		nl++
	}
	key := make([]byte, 0, n+2*nl)
	for i := nl - 1; i >= 0; i-- {
		off := starts[i]
		for _, b := range wire[off+1 : off+1+int(wire[off])] {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			if b == 0 {
				key = append(key, 0, 0xff)
				continue
			}
			key = append(key, b)
		}
		key = append(key, 0, 0)
	}
	return string(key), nil
}

// Compare compares two names in canonical order: negative if a sorts
// before b, zero if equal ignoring case, positive otherwise.
func Compare(a, b string) (int, error) {
	ka, err := Key(a)
	if err != nil {
		return 0, err
	}
	kb, err := Key(b)
	if err != nil {
		return 0, err
	}
	return bytes.Compare([]byte(ka), []byte(kb)), nil
}
