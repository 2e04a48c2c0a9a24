package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"github.com/regdr/regdr/internal/unboundlab"
)

// resolverHost is the validating resolver's loopback address: apart from
// the sites and the secondary, so a drill that cuts a site off the network
// does not cut off the outside view of the zone.
const resolverHost = "127.0.50.1"

// resolverWait bounds the wait for the first secure answer: Unbound starts
// in well under a second and the secondary already serves the zone.
const resolverWait = 20 * time.Second

// startResolver starts Unbound as a validating resolver for the lab TLD:
// its only trust anchor is tokyo's KSK (read from the public .key file in
// tokyo's key_dir), its only upstream the public secondary. It returns
// once the TLD's SOA validates through it, so a lab that is up has been
// verified from outside at least once.
func (l *Lab) startResolver(ctx context.Context, step func(string, ...any)) error {
	st := l.State
	tokyo, ok := l.Cfg.Site("tokyo")
	if !ok {
		return errors.New("resolver: the lab config has no tokyo site")
	}
	anchors, err := unboundlab.AnchorsFromKeyDir(tokyo.KeyDir, st.TLD)
	if err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	upstream, err := netip.ParseAddrPort(st.Secondary)
	if err != nil {
		return fmt.Errorf("resolver: secondary address %q: %w", st.Secondary, err)
	}
	port, err := freePort(resolverHost)
	if err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	addr := net.JoinHostPort(resolverHost, strconv.Itoa(port))
	st.Listen = append(st.Listen, addr)
	o := unboundlab.Options{
		Dir:    filepath.Join(st.Dir, "unbound"),
		Listen: netip.MustParseAddrPort(addr),
		Zones:  []unboundlab.Zone{{Origin: st.TLD, Upstreams: []netip.AddrPort{upstream}, Anchors: anchors}},
	}
	tags := ""
	for i, a := range anchors {
		if i > 0 {
			tags += ","
		}
		tags += strconv.Itoa(int(a.(*dns.DNSKEY).KeyTag()))
	}
	step("starting Unbound as the validating resolver on %s (trust anchor: %s KSK %s)", addr, st.TLD, tags)
	argv, err := unboundlab.Prepare(ctx, o)
	if err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	p, err := spawn("unbound", filepath.Join(st.Dir, "unbound.log"), argv, nil)
	if err != nil {
		return err
	}
	st.setProc(p)
	st.Resolver = addr
	if err := st.Save(); err != nil {
		return err
	}
	return waitUntil(ctx, resolverWait, "the resolver to validate "+st.TLD+" SOA", func() error {
		if !alive(p.Pid) {
			return fmt.Errorf("unbound exited (see %s)", p.Log)
		}
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		res, err := l.Resolve(c, st.TLD, dns.TypeSOA)
		if err != nil {
			return err
		}
		if !res.Secure {
			return fmt.Errorf("answer is %s", res)
		}
		return nil
	})
}

// Resolve asks the lab's validating resolver (Unbound) for name/qtype: the
// view of the zone from outside. Result.Secure means the answer validated
// against the lab's trust anchor; Result.Bogus that validation failed.
func (l *Lab) Resolve(ctx context.Context, name string, qtype uint16) (unboundlab.Result, error) {
	if l.State.Resolver == "" {
		return unboundlab.Result{}, errors.New("this lab has no validating resolver (State.Resolver is empty)")
	}
	return unboundlab.Validate(ctx, l.State.Resolver, name, qtype)
}
