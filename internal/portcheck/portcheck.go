// Package portcheck answers whether a lab process's address is free to
// bind, for TCP and UDP at once (DNS and gossip listen on both): stopping
// a daemon is done only when its port is free again, and a restart waits
// for it.
package portcheck

import (
	"errors"
	"net"
	"net/netip"
)

// Free returns nil when addr can be bound for TCP and UDP right now.
func Free(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	return u.Close()
}

// Loopback returns a 127.0.0.1 address whose port was free for TCP and
// UDP a moment ago (tests pick their servers' addresses with it).
func Loopback() (netip.AddrPort, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return netip.AddrPort{}, err
		}
		ap := l.Addr().(*net.TCPAddr).AddrPort()
		l.Close()
		if u, err := net.ListenPacket("udp", ap.String()); err == nil {
			u.Close()
			return ap, nil
		}
	}
	return netip.AddrPort{}, errors.New("no free loopback port for TCP and UDP")
}
