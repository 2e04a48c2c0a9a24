package gates

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/dnsname"
	"github.com/regdr/regdr/replicator/zone"
)

// lowerName returns name in the form the index keys names by
// (zone.NameKey: lower case, escapes as miekg prints them) and absolute.
// It returns name itself, without allocating, when it is already so: in a
// generated zone that is nearly every name, and a million-delegation zone
// must not allocate a string per record.
func lowerName(name string) string {
	if name == "" || !dns.IsFqdn(name) {
		name = dns.Fqdn(name)
	}
	return zone.NameKey(name)
}

// hasUpper reports an ASCII upper-case letter in s.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// parentName strips the first label of an absolute name: "" for the root.
// Escaped dots ("a\.b.test.") do not end a label.
func parentName(name string) string {
	if name == "." || name == "" {
		return ""
	}
	off, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[off:]
}

// firstLabel returns the first label of an absolute name, as presented.
func firstLabel(name string) string {
	off, end := dns.NextLabel(name, 0)
	if end {
		return strings.TrimSuffix(name, ".")
	}
	return name[:off-1]
}

// under reports whether child is parent or below it. Both must be lower
// case and absolute. The label boundary must be a real (unescaped) dot.
func under(child, parent string) bool {
	if parent == "." {
		return true
	}
	if len(child) < len(parent) || !strings.HasSuffix(child, parent) {
		return false
	}
	if len(child) == len(parent) {
		return true
	}
	i := len(child) - len(parent) - 1 // the dot before parent
	if child[i] != '.' {
		return false
	}
	// The dot is escaped if an odd number of backslashes precede it.
	n := 0
	for j := i - 1; j >= 0 && child[j] == '\\'; j-- {
		n++
	}
	return n%2 == 0
}

// strictlyUnder reports whether child is below parent and not parent.
func strictlyUnder(child, parent string) bool {
	return child != parent && under(child, parent)
}

// canonicalKey is the RFC 4034 §6.1 order key the signer uses too.
func canonicalKey(name string) (string, error) { return dnsname.Key(name) }

// isReverse reports a name in the reverse trees, where CNAMEs are the
// RFC 2317 mechanism rather than ordinary aliases.
func isReverse(name string) bool {
	return under(name, "in-addr.arpa.") || under(name, "ip6.arpa.")
}

// hasClasslessLabel reports an RFC 2317 classless label ("0/25", "64-127")
// anywhere in name.
func hasClasslessLabel(name string) bool {
	for off, end := 0, false; !end; {
		next, e := dns.NextLabel(name, off)
		l := strings.TrimSuffix(name[off:], ".")
		if !e {
			l = name[off : next-1]
		}
		if isClassless(l) {
			return true
		}
		off, end = next, e
	}
	return false
}

// isClassless: digits, then "/" or "-", then digits (RFC 2317 §4 suggests
// "/" and allows any separator the zone's users agree on; "-" is the other
// one seen in the wild).
func isClassless(label string) bool {
	i := 0
	for i < len(label) && label[i] >= '0' && label[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(label)-1 || (label[i] != '/' && label[i] != '-') {
		return false
	}
	for _, c := range []byte(label[i+1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
