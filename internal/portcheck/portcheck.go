// Package portcheck answers whether a lab process's address is free to
// bind, for TCP and UDP at once (DNS and gossip listen on both): stopping
// a daemon is done only when its port is free again, and a restart waits
// for it.
package portcheck

import "net"

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
