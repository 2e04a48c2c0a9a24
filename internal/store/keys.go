// Package store names every regdr key in etcd and holds the small records
// kept there: the active-site record with its fencing epoch and the zone
// freezes. Everything regdr writes to etcd is JSON under one prefix, and
// every write that decides something is a Txn guarded by a compare, so a
// writer acting on a stale read loses with a named error instead of
// overwriting.
package store

import (
	"fmt"
	"net/url"
	"strings"
)

// DefaultPrefix is where regdr keeps its keys when the config names none.
const DefaultPrefix = "/regdr"

// Keys is the one place that names regdr's etcd keys. The zero value uses
// DefaultPrefix. Names built into keys (sites, zones, ids) are path-escaped,
// so a name containing "/" cannot reach another record's key.
type Keys struct {
	// Prefix is prepended to every key; a trailing "/" is ignored.
	Prefix string
}

func (k Keys) p() string {
	p := strings.TrimRight(k.Prefix, "/")
	if p == "" {
		return DefaultPrefix
	}
	return p
}

// Active is the active-site record: which site may publish and write, under
// which epoch.
func (k Keys) Active() string { return k.p() + "/active" }

// allZones is the freeze key component for "every zone". No canonical zone
// name (lower case, ending in ".") can equal it.
const allZones = "*"

// Freeze is the freeze record for zone, or for every zone when zone is "".
// The zone name is canonicalised (see CanonicalZone) so that "Test" and
// "test." name the same freeze.
func (k Keys) Freeze(zone string) string {
	if zone == "" {
		return k.Freezes() + allZones
	}
	return k.Freezes() + url.PathEscape(CanonicalZone(zone))
}

// Freezes is the prefix under which all freeze records live.
func (k Keys) Freezes() string { return k.p() + "/freeze/" }

// AuditEntry is audit entry seq. Seqs are zero-padded to 20 digits (the
// width of the largest uint64) so that key order is seq order.
func (k Keys) AuditEntry(seq uint64) string { return fmt.Sprintf("%s%020d", k.AuditEntries(), seq) }

// AuditEntries is the prefix under which the audit entries live.
func (k Keys) AuditEntries() string { return k.p() + "/audit/entries/" }

// AuditHead records the seq and hash of the last audit entry.
func (k Keys) AuditHead() string { return k.p() + "/audit/head" }

// Agent is where site's agent publishes its state.
func (k Keys) Agent(site string) string { return k.Agents() + url.PathEscape(site) }

// Agents is the prefix under which the agents' records live.
func (k Keys) Agents() string { return k.p() + "/agents/" }

// Operation is the plan and journal of the failover operation id.
func (k Keys) Operation(id string) string { return k.Operations() + url.PathEscape(id) }

// Operations is the prefix under which operations live.
func (k Keys) Operations() string { return k.p() + "/operations/" }

// ZoneVersion is the stored record of zone's version with serial. Serials
// are zero-padded to 10 digits (the width of the largest uint32) so that
// key order is numeric order; note that RFC 1982 serial order is not
// numeric order across a wrap, so callers decide "newer" themselves.
func (k Keys) ZoneVersion(zone string, serial uint32) string {
	return fmt.Sprintf("%s%010d", k.ZoneVersions(zone), serial)
}

// ZoneVersions is the prefix under which zone's versions live.
func (k Keys) ZoneVersions(zone string) string {
	return k.p() + "/zones/" + url.PathEscape(CanonicalZone(zone)) + "/versions/"
}

// CanonicalZone returns zone in lower case with a trailing dot, the one
// spelling regdr uses in keys and records. "" stays "".
func CanonicalZone(zone string) string {
	if zone == "" {
		return ""
	}
	z := strings.ToLower(zone)
	if !strings.HasSuffix(z, ".") {
		z += "."
	}
	return z
}

// SiteLease is the key the active site's agent keeps alive under its etcd
// lease: while it exists, that agent confirmed its site active within the
// lease TTL.
func (k Keys) SiteLease(site string) string { return k.p() + "/leases/" + url.PathEscape(site) }
