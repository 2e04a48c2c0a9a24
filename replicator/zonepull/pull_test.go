package zonepull

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zone/zonetest"
	"github.com/regdr/regdr/replicator/zoneserve"
)

const (
	origin      = "example."
	keyName     = "xfr.regdr.test."
	secret      = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg=="
	wrongSecret = "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmch"
)

// xfr is one fake primary's side of a transfer. It signs with miekg's
// TsigGenerate where miekg can express the message (every message signed),
// and by hand, following RFC 8945 §5.3.1, where it cannot (a signed message
// after unsigned ones).
type xfr struct {
	t        *testing.T
	conn     net.Conn
	q        *dns.Msg
	prevMAC  string
	first    bool
	unsigned [][]byte
}

func (x *xfr) msg(rrs ...dns.RR) *dns.Msg {
	m := new(dns.Msg).SetReply(x.q)
	m.Authoritative = true
	m.Answer = rrs
	return m
}

func (x *xfr) write(wire []byte) {
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(wire)))
	if _, err := x.conn.Write(append(l[:], wire...)); err != nil {
		x.t.Logf("fake primary: write: %v", err)
	}
}

func (x *xfr) signed(m *dns.Msg) { x.signedWith(m, keyName, secret) }

func (x *xfr) signedWith(m *dns.Msg, name, sec string) {
	m.SetTsig(name, dns.HmacSHA256, 300, time.Now().Unix())
	if len(x.unsigned) == 0 {
		wire, mac, err := dns.TsigGenerate(m, sec, x.prevMAC, !x.first)
		if err != nil {
			x.t.Fatal(err)
		}
		x.prevMAC, x.first = mac, false
		x.write(wire)
		return
	}
	t := m.Extra[len(m.Extra)-1].(*dns.TSIG)
	m.Extra = m.Extra[:len(m.Extra)-1]
	body, err := m.Pack()
	if err != nil {
		x.t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(sec)
	prev, _ := hex.DecodeString(x.prevMAC)
	h := hmac.New(sha256.New, key)
	binary.Write(h, binary.BigEndian, uint16(len(prev)))
	h.Write(prev)
	for _, u := range x.unsigned {
		h.Write(u)
	}
	h.Write(body)
	h.Write([]byte{byte(t.TimeSigned >> 40), byte(t.TimeSigned >> 32), byte(t.TimeSigned >> 24), byte(t.TimeSigned >> 16), byte(t.TimeSigned >> 8), byte(t.TimeSigned)})
	binary.Write(h, binary.BigEndian, t.Fudge)
	t.MAC = hex.EncodeToString(h.Sum(nil))
	t.MACSize = uint16(len(t.MAC) / 2)
	m.Extra = append(m.Extra, t)
	wire, err := m.Pack()
	if err != nil {
		x.t.Fatal(err)
	}
	x.prevMAC, x.unsigned = t.MAC, nil
	x.write(wire)
}

func (x *xfr) unsignedMsg(m *dns.Msg) []byte {
	wire, err := m.Pack()
	if err != nil {
		x.t.Fatal(err)
	}
	x.unsigned = append(x.unsigned, wire)
	x.write(wire)
	return wire
}

// fakePrimary accepts one connection, reads the AXFR query, checks its
// TSIG and runs script. It returns the address to pull from.
func fakePrimary(t *testing.T, script func(x *xfr)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return
		}
		raw := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, raw); err != nil {
			return
		}
		q := new(dns.Msg)
		if err := q.Unpack(raw); err != nil {
			t.Errorf("fake primary: bad query: %v", err)
			return
		}
		ts := q.IsTsig()
		if ts == nil {
			t.Errorf("fake primary: query not signed")
			return
		}
		if err := dns.TsigVerify(raw, secret, "", false); err != nil {
			t.Errorf("fake primary: query TSIG: %v", err)
			return
		}
		script(&xfr{t: t, conn: conn, q: q, prevMAC: ts.MAC, first: true})
	}()
	return ln.Addr().String()
}

// chunks splits SOA, records..., SOA into messages of n records.
func chunks(z *zone.Zone, n int) [][]dns.RR {
	all := append(z.RRs(), z.RR(0))
	var out [][]dns.RR
	for len(all) > 0 {
		k := min(n, len(all))
		out = append(out, all[:k])
		all = all[k:]
	}
	return out
}

func TestPullFromFakePrimary(t *testing.T) {
	z := zonetest.Zone(t, origin, 7, 1000)
	parts := chunks(z, 100) // 11 messages
	other := *z.SOA()
	other.Serial = 8

	tests := []struct {
		name    string
		script  func(x *xfr)
		wantErr error
		wantMsg string
	}{
		{"every message signed", func(x *xfr) {
			for _, p := range parts {
				x.signed(x.msg(p...))
			}
		}, nil, ""},
		{"unsigned messages covered by the next signature", func(x *xfr) {
			for i, p := range parts {
				if i == 0 || i == len(parts)-1 || i%4 == 0 {
					x.signed(x.msg(p...))
				} else {
					x.unsignedMsg(x.msg(p...))
				}
			}
		}, nil, ""},
		{"unsigned message altered after signing", func(x *xfr) {
			x.signed(x.msg(parts[0]...))
			wire := x.unsignedMsg(x.msg(parts[1]...))
			// the MAC covers what was "sent"; the wire carries a change
			x.unsigned[0] = append([]byte(nil), wire...)
			x.unsigned[0][len(wire)-1] ^= 1
			for _, p := range parts[2:] {
				x.signed(x.msg(p...))
			}
		}, ErrBadTSIG, "MAC does not verify"},
		{"last message unsigned", func(x *xfr) {
			for _, p := range parts[:len(parts)-1] {
				x.signed(x.msg(p...))
			}
			x.unsignedMsg(x.msg(parts[len(parts)-1]...))
		}, ErrBadTSIG, "last message is not signed"},
		{"first message unsigned", func(x *xfr) {
			x.unsignedMsg(x.msg(parts[0]...))
		}, ErrBadTSIG, "no TSIG"},
		{"100 unsigned messages in a row", func(x *xfr) {
			x.signed(x.msg(parts[0]...))
			for range 100 {
				x.unsignedMsg(x.msg(parts[1]...))
			}
		}, ErrBadTSIG, "consecutive"},
		{"signed with a wrong secret", func(x *xfr) {
			x.signedWith(x.msg(parts[0]...), keyName, wrongSecret)
		}, ErrBadTSIG, "MAC does not verify"},
		{"signed with another key", func(x *xfr) {
			x.signedWith(x.msg(parts[0]...), "other.key.", secret)
		}, ErrBadTSIG, "other.key."},
		{"connection closed mid-transfer", func(x *xfr) {
			for _, p := range parts[:5] {
				x.signed(x.msg(p...))
			}
		}, ErrTruncated, "after 500 records in 5 messages"},
		{"TC bit on TCP", func(x *xfr) {
			m := x.msg(parts[0]...)
			m.Truncated = true
			x.signed(m)
		}, ErrTruncated, "TC bit"},
		{"closed without an answer", func(x *xfr) {}, ErrEmptyTransfer, "before any answer"},
		{"answer without records", func(x *xfr) { x.signed(x.msg()) }, ErrEmptyTransfer, "no records"},
		{"refused, unsigned", func(x *xfr) {
			m := x.msg()
			m.Rcode = dns.RcodeRefused
			x.unsignedMsg(m)
		}, ErrRefused, "REFUSED"},
		{"refused, signed", func(x *xfr) {
			m := x.msg()
			m.Rcode = dns.RcodeNotAuth
			x.signed(m)
		}, ErrRefused, "NOTAUTH"},
		{"does not start with the SOA", func(x *xfr) {
			x.signed(x.msg(parts[0][1:]...))
		}, ErrBadTransfer, "not the SOA"},
		{"closing SOA differs", func(x *xfr) {
			for _, p := range parts[:len(parts)-1] {
				x.signed(x.msg(p...))
			}
			last := append([]dns.RR{}, parts[len(parts)-1]...)
			last[len(last)-1] = &other
			x.signed(x.msg(last...))
		}, ErrBadTransfer, "closing SOA (serial 8) differs from the opening one (serial 7)"},
		{"records after the closing SOA", func(x *xfr) {
			for _, p := range parts[:len(parts)-1] {
				x.signed(x.msg(p...))
			}
			x.signed(x.msg(append(append([]dns.RR{}, parts[len(parts)-1]...), parts[1][0])...))
		}, ErrBadTransfer, "1 records after the closing SOA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakePrimary(t, tt.script)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := Pull(ctx, addr, origin, keyName, secret)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Pull: %v", err)
				}
				if got.Digest != z.Digest || got.Serial != 7 {
					t.Errorf("pulled serial %d digest %s, want 7 %s", got.Serial, got.Digest, z.Digest)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Pull: %v; want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), "pull example. from "+addr) {
				t.Errorf("error %q does not name the zone and the primary", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error reveals the secret")
			}
		})
	}
}

// A primary that accepts and then says nothing: Pull gives up at the
// caller's deadline or cancellation, not at some internal timeout.
func TestPullRespectsContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			addr := fakePrimary(t, func(x *xfr) {
				x.signed(x.msg(zonetest.Zone(t, origin, 1, 10).RR(0)))
				<-release
			})
			defer close(release)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := Pull(ctx, addr, origin, keyName, secret)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Pull: %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "after 1 records in 1 messages") {
				t.Errorf("error %q does not say how far it got", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Pull returned after %v, 300ms after it was told to stop", d)
			}
		})
	}
}

func startPrimary(t *testing.T, zones ...*zone.Zone) *zoneserve.Server {
	t.Helper()
	s, err := zoneserve.New(zoneserve.Options{
		Addr:   "127.0.0.1:0",
		TSIG:   map[string]string{keyName: secret},
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, z := range zones {
		s.SetZone(z)
	}
	return s
}

func TestPullFromZoneserve(t *testing.T) {
	big := zonetest.Zone(t, origin, 2024, 10000)
	s := startPrimary(t, big)
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got, err := Pull(ctx, addr, "EXAMPLE", keyName, secret)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != big.Digest || got.Serial != 2024 || got.Len() != big.Len() {
		t.Errorf("pulled serial %d, %d records, digest %s; served 2024, %d, %s", got.Serial, got.Len(), got.Digest, big.Len(), big.Digest)
	}
	for typ, n := range big.Counts {
		if got.Counts[typ] != n {
			t.Errorf("count %s: pulled %d, served %d", typ, got.Counts[typ], n)
		}
	}

	tests := []struct {
		name, origin, key, secret string
		wantErr                   error
	}{
		{"wrong secret", origin, keyName, wrongSecret, ErrRefused},
		{"unknown key", origin, "other.key.", secret, ErrRefused},
		{"zone not served", "other.", keyName, secret, ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Pull(ctx, addr, tt.origin, tt.key, tt.secret); !errors.Is(err, tt.wantErr) {
				t.Errorf("Pull: %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, err := Pull(ctx, addr, origin, keyName, "not base64!"); err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("Pull with a malformed secret: %v", err)
	}
}

func TestQuerySerial(t *testing.T) {
	s := startPrimary(t, zonetest.Zone(t, origin, 4242, 20))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if got, err := QuerySerial(ctx, s.Addr().String(), origin); err != nil || got != 4242 {
		t.Errorf("QuerySerial: %d, %v; want 4242", got, err)
	}
	if _, err := QuerySerial(ctx, s.Addr().String(), "other."); !errors.Is(err, ErrRefused) {
		t.Errorf("QuerySerial of a zone not served: %v, want ErrRefused", err)
	}

	// A server that truncates over UDP: the answer must come over TCP.
	addr, tcpQueries := truncatingServer(t, 77)
	if got, err := QuerySerial(ctx, addr, origin); err != nil || got != 77 {
		t.Errorf("QuerySerial with UDP truncation: %d, %v; want 77", got, err)
	}
	if n := tcpQueries(); n != 1 {
		t.Errorf("%d TCP queries, want 1 (the retry after TC)", n)
	}
}

// truncatingServer answers SOA queries with TC over UDP and with the SOA
// (serial) over TCP. It returns its address and a TCP query counter.
func truncatingServer(t *testing.T, serial uint32) (string, func() int) {
	t.Helper()
	// The kernel's free UDP port may be taken for TCP: try a few.
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	tcp := make(chan struct{}, 10)
	soa := zonetest.Zone(t, origin, serial, 1).RR(0)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		m.Authoritative = true
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			m.Truncated = true
		} else {
			tcp <- struct{}{}
			m.Answer = []dns.RR{soa}
		}
		w.WriteMsg(m)
	})
	udpSrv := &dns.Server{PacketConn: pc, Handler: h}
	tcpSrv := &dns.Server{Listener: ln, Handler: h}
	go udpSrv.ActivateAndServe()
	go tcpSrv.ActivateAndServe()
	t.Cleanup(func() { udpSrv.Shutdown(); tcpSrv.Shutdown() })
	return pc.LocalAddr().String(), func() int { return len(tcp) }
}
