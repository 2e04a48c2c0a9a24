package zonesign

import (
	"bufio"
	"fmt"
	"io"

	"github.com/miekg/dns"
)

// WriteZone writes rrs as a master file: one RR per line in miekg/dns
// presentation format, every name absolute, no $ORIGIN or $TTL, so each
// line stands on its own and no directive can shift the names of the
// lines after it (the .se 2009 doubled-origin failure).
func WriteZone(w io.Writer, rrs []dns.RR) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	for _, rr := range rrs {
		if rr == nil {
			continue
		}
		if !dns.IsFqdn(rr.Header().Name) {
			return fmt.Errorf("write zone: owner %q is not absolute", rr.Header().Name)
		}
		if _, err := bw.WriteString(rr.String()); err != nil {
			return fmt.Errorf("write zone: %w", err)
		}
		if err := bw.WriteByte('\n'); err != nil {
			return fmt.Errorf("write zone: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write zone: %w", err)
	}
	return nil
}

// WriteFileAtomic replaces path with the zone rrs (mode 0644: zone data is
// public). The zone goes to a temp file in the same directory, is fsynced
// and renamed over path, and the directory is fsynced: a reader (the agent
// loading the zone, a transfer in progress) sees the previous zone or the
// whole new one, never a prefix, even if this process is killed midway
// (INCIDENTS.md, .hk 2004).
func WriteFileAtomic(path string, rrs []dns.RR) error {
	return writeFileAtomic(path, 0o644, func(w io.Writer) error { return WriteZone(w, rrs) })
}
