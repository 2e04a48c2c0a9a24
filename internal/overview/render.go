package overview

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/regdr/regdr/internal/status"
)

// Render writes the patronictl-list-style table an operator reads.
func Render(w io.Writer, d status.Deployment) error {
	active := d.ActiveSite
	if active == "" {
		active = "UNKNOWN"
	}
	head := fmt.Sprintf("Deployment %s: active site %s, epoch %d", d.Deployment, active, d.Epoch)
	if !d.Since.IsZero() {
		head += ", since " + d.Since.UTC().Format(time.RFC3339)
	}
	head += " (source: " + d.Source + ")"
	fmt.Fprintln(w, head)

	zones := map[string]bool{}
	for _, s := range d.Sites {
		for z := range s.Serials {
			zones[z] = true
		}
	}
	zoneNames := make([]string, 0, len(zones))
	for z := range zones {
		zoneNames = append(zoneNames, z)
	}
	sort.Strings(zoneNames)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cols := []string{"SITE", "ROLE", "AGENT", "HEALTH", "PG", "TL", "LSN", "LAG", "LAG(s)"}
	for _, z := range zoneNames {
		cols = append(cols, "SERIAL "+z)
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, s := range d.Sites {
		agent := "down"
		if s.AgentAlive {
			agent = "up"
			if s.AgentSeen == "gossip" {
				agent = "up (gossip)"
			}
		}
		pg := dash(s.PGRole)
		if s.PGState == "unreachable" {
			pg = "unreachable"
		}
		tl := "-"
		if s.Timeline > 0 {
			tl = fmt.Sprint(s.Timeline)
		}
		lag, lagS := "-", "-"
		if s.LagBytes != nil {
			lag = fmt.Sprintf("%d B", *s.LagBytes)
		}
		if s.LagSeconds != nil {
			lagS = fmt.Sprintf("%.3f", *s.LagSeconds)
		}
		row := []string{s.Site, s.Role, agent, dash(s.Health), pg, tl, dash(s.LSN), lag, lagS}
		for _, z := range zoneNames {
			if v, ok := s.Serials[z]; ok {
				row = append(row, fmt.Sprint(v))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range d.Secondaries {
		state := "ok"
		switch {
		case c.Error != "":
			state = c.Error
		case len(c.Mismatches) > 0:
			state = fmt.Sprintf("%d of %d sampled delegations DIFFER", len(c.Mismatches), c.Sampled)
		default:
			state = fmt.Sprintf("serves the published serial, %d sampled delegations match", c.Sampled)
		}
		fmt.Fprintf(w, "Secondary %s (%s) %s serial %d: %s\n", c.Name, c.Addr, c.Zone, c.Serial, state)
	}
	if len(d.Frozen) > 0 {
		fmt.Fprintln(w, "Frozen: "+strings.Join(d.Frozen, "; "))
	} else {
		fmt.Fprintln(w, "Frozen: no")
	}
	if d.RPOSeconds != nil {
		mode := "asynchronous"
		if d.Sync != nil && d.Sync.Setting != "" {
			mode = "synchronous (" + d.Sync.Setting + ")"
		}
		fmt.Fprintf(w, "Replication: %s; RPO now %.1f s (age of the newest heartbeat at the standby)\n", mode, *d.RPOSeconds)
	}
	for _, f := range d.Fenced {
		fmt.Fprintln(w, "FENCED: "+f)
	}
	if b := d.Backup; b != nil {
		switch {
		case b.LastVerifiedTime.IsZero():
			fmt.Fprintln(w, "Backup: no restore test has passed yet")
		default:
			stale := ""
			if b.Stale {
				stale = " (STALE)"
			}
			fmt.Fprintf(w, "Backup: last verified %s at %s%s; last run %s\n", b.LastVerifiedID, b.LastVerifiedTime.UTC().Format(time.RFC3339), stale, dash(b.LastResult))
		}
	}
	for _, s := range d.Sites {
		for _, p := range s.Problems {
			fmt.Fprintf(w, "! %s: %s\n", s.Site, p)
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintln(w, "Note: "+n)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
