package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// checkAddr says why s is not a host:port that a peer can dial: the host
// is an IP address or a DNS name, the port a number from 1 to 65535.
// The returned reason does not repeat s; callers quote it.
func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			reason := strings.TrimSuffix(ae.Err, " in address")
			if reason == "too many colons" {
				reason += " (write an IPv6 host in brackets: [::1]:53)"
			}
			return errors.New(reason)
		}
		return err
	}
	if err := checkPort(port); err != nil {
		return err
	}
	if host == "" {
		return errors.New("missing host")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !isHostname(host) {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
	}
	return nil
}

func checkPort(port string) error {
	if port == "" {
		return errors.New("missing port")
	}
	if !isDigits(port) || len(port) > 5 {
		return fmt.Errorf("port %q is not a number", port)
	}
	n, _ := strconv.Atoi(port)
	if n < 1 || n > 65535 {
		return fmt.Errorf("port %d out of range 1-65535", n)
	}
	return nil
}

// unspecifiedHost says whether addr binds every interface (0.0.0.0, ::),
// which is no address a peer can be told to dial.
func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

// listenKey folds spellings of one address together for duplicate checks.
func listenKey(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), port)
}

// isHostname accepts LDH names (RFC 1123), with or without the final dot.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// checkDomainName says why s is not a domain name regdr will handle; the
// final dot is optional here, callers that need it say so in their own
// words. Labels may hold letters, digits, '-', '_' and '/' (RFC 2317
// classless reverse zones such as 0/25.2.0.192.in-addr.arpa.); anything
// else is far more likely a typo than a real name.
func checkDomainName(s string) error {
	if s == "." {
		return nil
	}
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > 253 {
		return fmt.Errorf("name is %d characters long, more than 253", len(name))
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" {
			return fmt.Errorf("%q has an empty label", s)
		}
		if len(l) > 63 {
			return fmt.Errorf("%q has a label longer than 63 characters", s)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' && c != '_' && c != '/' {
				return fmt.Errorf("%q holds %q, not allowed in a domain name", s, string(rune(c)))
			}
		}
	}
	return nil
}

// checkEndpoint says why s is not an etcd client URL: http(s)://host:port
// and nothing else (a path or credentials in it would be ignored by the
// client or leak into logs).
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want an http:// or https:// URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
		return errors.New("want only scheme://host:port")
	}
	if err := checkAddr(u.Host); err != nil {
		return err
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
