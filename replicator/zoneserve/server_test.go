package zoneserve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/replicator/zone"
	"github.com/regdr/regdr/replicator/zone/zonetest"
)

const (
	keyName     = "xfr.regdr.test."
	secret      = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg==" // 32 bytes
	wrongSecret = "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmch"     // 30 bytes
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startServer runs a Server on a free loopback port serving zones.
func startServer(t *testing.T, onNotify func(string, uint32, netip.AddrPort), zones ...*zone.Zone) *Server {
	t.Helper()
	s, err := New(Options{
		Addr:     "127.0.0.1:0",
		TSIG:     map[string]string{keyName: secret},
		Logger:   testLogger(t),
		OnNotify: onNotify,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, z := range zones {
		s.SetZone(z)
	}
	return s
}

type signing int

const (
	unsigned signing = iota
	goodKey
	badSecret
	unknownKey
)

func exchange(t *testing.T, addr, network string, m *dns.Msg, sign signing) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	switch sign {
	case goodKey:
		c.TsigSecret = map[string]string{keyName: secret}
		m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	case badSecret:
		c.TsigSecret = map[string]string{keyName: wrongSecret}
		m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	case unknownKey:
		c.TsigSecret = map[string]string{"other.key.": secret}
		m.SetTsig("other.key.", dns.HmacSHA256, 300, time.Now().Unix())
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %s over %s: %v", m.Question[0].String(), network, err)
	}
	return r
}

func TestQueries(t *testing.T) {
	z := zonetest.Zone(t, "example.", 100, 50)
	s := startServer(t, nil, z)
	addr := s.Addr().String()

	ixfr := func(serial uint32) *dns.Msg {
		m := new(dns.Msg)
		m.SetIxfr("example.", serial, "ns1.example.", "hostmaster.example.")
		return m
	}
	q := func(name string, qtype uint16) *dns.Msg { return new(dns.Msg).SetQuestion(name, qtype) }
	chaos := q("example.", dns.TypeSOA)
	chaos.Question[0].Qclass = dns.ClassCHAOS

	tests := []struct {
		name      string
		msg       *dns.Msg
		network   string
		sign      signing
		rcode     int
		answers   int
		wantTSIG  bool
		wantSOAAA bool
	}{
		{"SOA at apex", q("example.", dns.TypeSOA), "udp", unsigned, dns.RcodeSuccess, 1, false, true},
		{"SOA at apex, other case", q("EXAMPLE.", dns.TypeSOA), "udp", unsigned, dns.RcodeSuccess, 1, false, true},
		{"SOA at apex over TCP, signed", q("example.", dns.TypeSOA), "tcp", goodKey, dns.RcodeSuccess, 1, true, true},
		{"SOA with a bad TSIG", q("example.", dns.TypeSOA), "udp", badSecret, dns.RcodeRefused, 0, false, false},
		{"SOA with an unknown key", q("example.", dns.TypeSOA), "udp", unknownKey, dns.RcodeRefused, 0, false, false},
		{"SOA below the apex", q("d000001.example.", dns.TypeSOA), "udp", unsigned, dns.RcodeRefused, 0, false, false},
		{"SOA of a zone not served", q("other.", dns.TypeSOA), "udp", unsigned, dns.RcodeRefused, 0, false, false},
		{"SOA in class CH", chaos, "udp", unsigned, dns.RcodeRefused, 0, false, false},
		{"NS at apex", q("example.", dns.TypeNS), "udp", unsigned, dns.RcodeRefused, 0, false, false},
		{"A of a glue host", q("ns1.example.", dns.TypeA), "udp", goodKey, dns.RcodeRefused, 0, true, false},
		{"AXFR over UDP, signed", q("example.", dns.TypeAXFR), "udp", goodKey, dns.RcodeRefused, 0, true, false},
		{"IXFR over UDP, signed: SOA only", ixfr(99), "udp", goodKey, dns.RcodeSuccess, 1, true, true},
		{"IXFR over UDP, unsigned", ixfr(99), "udp", unsigned, dns.RcodeRefused, 0, false, false},
		{"IXFR over TCP, up to date", ixfr(100), "tcp", goodKey, dns.RcodeSuccess, 1, true, true},
		{"IXFR over TCP, client ahead", ixfr(101), "tcp", goodKey, dns.RcodeSuccess, 1, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := exchange(t, addr, tt.network, tt.msg, tt.sign)
			if r.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			if len(r.Answer) != tt.answers {
				t.Errorf("%d answers, want %d", len(r.Answer), tt.answers)
			}
			if got := r.IsTsig() != nil; got != tt.wantTSIG {
				t.Errorf("response signed = %v, want %v", got, tt.wantTSIG)
			}
			if tt.wantSOAAA {
				if !r.Authoritative {
					t.Error("AA not set")
				}
				if soa, ok := r.Answer[0].(*dns.SOA); !ok || soa.Serial != 100 {
					t.Errorf("answer %v, want SOA serial 100", r.Answer)
				}
			}
		})
	}
}

// transferIn runs an AXFR or IXFR with miekg's client, which verifies the
// TSIG of every message and fails on an unsigned one.
func transferIn(addr string, m *dns.Msg, sign signing) (rrs []dns.RR, msgs int, err error) {
	tr := &dns.Transfer{}
	switch sign {
	case goodKey:
		tr.TsigSecret = map[string]string{keyName: secret}
		m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	case badSecret:
		tr.TsigSecret = map[string]string{keyName: wrongSecret}
		m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	case unknownKey:
		tr.TsigSecret = map[string]string{"other.key.": secret}
		m.SetTsig("other.key.", dns.HmacSHA256, 300, time.Now().Unix())
	}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, 0, err
	}
	for env := range ch {
		if env.Error != nil {
			return rrs, msgs, env.Error
		}
		msgs++
		rrs = append(rrs, env.RR...)
	}
	return rrs, msgs, nil
}

func TestTransfer(t *testing.T) {
	z := zonetest.Zone(t, "example.", 100, 5000)
	s := startServer(t, nil, z)
	addr := s.Addr().String()
	axfr := func() *dns.Msg { return new(dns.Msg).SetAxfr("example.") }
	ixfr := func(serial uint32) *dns.Msg {
		return new(dns.Msg).SetIxfr("example.", serial, "ns1.example.", "hostmaster.example.")
	}
	tests := []struct {
		name    string
		msg     *dns.Msg
		sign    signing
		wantErr string
		wantRRs int
	}{
		{"AXFR signed", axfr(), goodKey, "", z.Len() + 1},
		{"IXFR from an older serial: full zone", ixfr(99), goodKey, "", z.Len() + 1},
		// miekg's IXFR client compares serials with a plain >=, so it
		// takes our first message for "up to date" and stops reading:
		// seeing a full first envelope proves we started the whole zone.
		{"IXFR from an older serial across wrap-around", ixfr(4294967000), goodKey, "", maxEnvelopeRRs},
		{"IXFR up to date: SOA only", ixfr(100), goodKey, "", 1},
		{"AXFR unsigned", axfr(), unsigned, "bad xfr rcode: 5", 0},
		{"AXFR with a bad secret", axfr(), badSecret, "", -1},
		{"AXFR with an unknown key", axfr(), unknownKey, "", -1},
		{"AXFR of a zone not served", new(dns.Msg).SetAxfr("other."), goodKey, "bad xfr rcode: 5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rrs, msgs, err := transferIn(addr, tt.msg, tt.sign)
			if tt.wantRRs < 0 || tt.wantErr != "" {
				// A refused transfer must give no records. With a key
				// the client holds, miekg reports the missing TSIG on
				// the unsigned REFUSED before the rcode: either is a
				// refusal.
				if err == nil || len(rrs) > 0 {
					t.Fatalf("got %d records, err %v; want a refusal", len(rrs), err)
				}
				if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("transfer: %v", err)
			}
			if len(rrs) != tt.wantRRs {
				t.Fatalf("%d records, want %d", len(rrs), tt.wantRRs)
			}
			if len(rrs) < z.Len() {
				return
			}
			if msgs < 2 {
				t.Errorf("%d messages: the test must exercise multi-message TSIG", msgs)
			}
			last, ok := rrs[len(rrs)-1].(*dns.SOA)
			if !ok || last.Serial != 100 {
				t.Errorf("transfer ends with %v, want the SOA", rrs[len(rrs)-1])
			}
			got, err := zone.FromRecords("example.", rrs[:len(rrs)-1])
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != z.Digest {
				t.Errorf("transferred digest %s, served %s", got.Digest, z.Digest)
			}
		})
	}
}

// A transfer that has started finishes on its version even if SetZone
// publishes a new one in the middle.
func TestSetZoneDuringTransfer(t *testing.T) {
	old := zonetest.Zone(t, "example.", 100, 20000)
	s := startServer(t, nil, old)

	m := new(dns.Msg).SetAxfr("example.")
	m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	tr := &dns.Transfer{TsigSecret: map[string]string{keyName: secret}}
	ch, err := tr.In(m, s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	first := <-ch
	if first.Error != nil {
		t.Fatal(first.Error)
	}
	s.SetZone(zonetest.Zone(t, "example.", 101, 10))
	if got := s.Zone("example.").Serial; got != 101 {
		t.Fatalf("Zone() serial %d after SetZone, want 101", got)
	}
	rrs := first.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatal(env.Error)
		}
		rrs = append(rrs, env.RR...)
	}
	if len(rrs) != old.Len()+1 {
		t.Fatalf("transfer gave %d records, want %d (the old version)", len(rrs), old.Len()+1)
	}
	if soa := rrs[len(rrs)-1].(*dns.SOA); soa.Serial != 100 {
		t.Errorf("closing SOA serial %d, want 100", soa.Serial)
	}
	// and a new query sees the new version
	r := exchange(t, s.Addr().String(), "udp", new(dns.Msg).SetQuestion("example.", dns.TypeSOA), unsigned)
	if soa := r.Answer[0].(*dns.SOA); soa.Serial != 101 {
		t.Errorf("SOA query after SetZone: serial %d, want 101", soa.Serial)
	}
	s.RemoveZone("EXAMPLE.")
	r = exchange(t, s.Addr().String(), "udp", new(dns.Msg).SetQuestion("example.", dns.TypeSOA), unsigned)
	if r.Rcode != dns.RcodeRefused {
		t.Errorf("SOA query after RemoveZone: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

type notification struct {
	origin string
	serial uint32
	from   netip.AddrPort
}

func TestNotifyRoundTrip(t *testing.T) {
	got := make(chan notification, 10)
	s := startServer(t, func(origin string, serial uint32, from netip.AddrPort) {
		got <- notification{origin, serial, from}
	})
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	res := Notify(ctx, []string{addr}, "Example", 42, keyName, secret)
	if len(res) != 1 || !res[0].Acked || res[0].Err != nil || res[0].Attempts != 1 || res[0].Target != addr {
		t.Fatalf("Notify: %+v, want acked on the first attempt", res)
	}
	select {
	case n := <-got:
		if n.origin != "example." || n.serial != 42 || n.from.Addr() != netip.MustParseAddr("127.0.0.1") || n.from.Port() == 0 {
			t.Errorf("OnNotify got %+v, want example. 42 from 127.0.0.1", n)
		}
	default:
		t.Fatal("OnNotify was not called before the NOTIFY was acknowledged")
	}

	// wrong secret: refused at once, callback not called
	res = Notify(ctx, []string{addr}, "example.", 43, keyName, wrongSecret+"AAAA")
	if res[0].Acked || !errors.Is(res[0].Err, ErrNotifyRefused) || res[0].Attempts != 1 {
		t.Errorf("Notify with a wrong secret: %+v, want refused after one attempt", res[0])
	}
	// unsigned NOTIFY: refused, callback not called
	m := new(dns.Msg).SetNotify("example.")
	if r := exchange(t, addr, "udp", m, unsigned); r.Rcode != dns.RcodeRefused {
		t.Errorf("unsigned NOTIFY: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	select {
	case n := <-got:
		t.Errorf("OnNotify called for a refused NOTIFY: %+v", n)
	default:
	}
	// no key name at all
	res = Notify(ctx, []string{addr}, "example.", 44, "", secret)
	if res[0].Acked || res[0].Err == nil || res[0].Attempts != 0 {
		t.Errorf("Notify without key name: %+v, want an error before sending", res[0])
	}
}

// A target that never answers gets retransmissions until ctx ends, while
// a live target in the same call is acknowledged at once.
func TestNotifyRetriesUntilDeadline(t *testing.T) {
	s := startServer(t, nil)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	received := make(chan int, 1)
	go func() {
		n := 0
		buf := make([]byte, 4096)
		for {
			if _, _, err := silent.ReadFrom(buf); err != nil {
				received <- n
				return
			}
			n++
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := Notify(ctx, []string{silent.LocalAddr().String(), s.Addr().String()}, "example.", 7, keyName, secret)
	elapsed := time.Since(start)
	silent.Close()
	packets := <-received

	if res[0].Acked || !errors.Is(res[0].Err, context.DeadlineExceeded) {
		t.Errorf("silent target: %+v, want not acked, deadline exceeded", res[0])
	}
	if res[0].Attempts < 2 || packets != res[0].Attempts {
		t.Errorf("silent target: %d attempts, %d packets received; want >= 2 and equal", res[0].Attempts, packets)
	}
	if !res[1].Acked || res[1].RTT <= 0 || res[1].RTT > time.Second {
		t.Errorf("live target: %+v, want acked quickly", res[1])
	}
	if elapsed > 4*time.Second {
		t.Errorf("Notify took %v with a 2.5s deadline", elapsed)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	tests := []struct {
		name string
		keys map[string]string
		want string
	}{
		{"not base64", map[string]string{keyName: "not*base64!"}, "not valid base64"},
		{"short", map[string]string{keyName: "c2hvcnQ="}, "5 bytes"},
		{"bad name", map[string]string{"bad..name": secret}, "not a domain name"},
		{"empty name", map[string]string{"": secret}, "not a domain name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Addr: "127.0.0.1:0", TSIG: tt.keys})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want error containing %q", err, tt.want)
			}
			for _, v := range tt.keys {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error %q reveals the secret", err)
				}
			}
		})
	}
	if _, err := New(Options{Addr: "no-port"}); err == nil {
		t.Error("New accepted an address without port")
	}
}

func TestStartAddressInUse(t *testing.T) {
	s := startServer(t, nil)
	other, err := New(Options{Addr: s.Addr().String(), TSIG: map[string]string{keyName: secret}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := other.Start(ctx); err == nil {
		other.Close()
		t.Fatal("second server started on a busy address")
	}
	if err := other.Close(); err != nil {
		t.Errorf("Close of a server that never started: %v", err)
	}
}
