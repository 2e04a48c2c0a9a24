// Package zonestore keeps every version of a zone a site accepted, on that
// site's disk, so that "roll back to the last good zone" is one command and
// a drill can ask what was published at any instant.
//
// Two incidents in INCIDENTS.md shape it. .hk 2004 restored service by
// re-activating the most recent known-good zone: that needs the zone, not
// just a note that it once existed. RIPE 2012 found during the outage that
// its backups did not exist, and later propagated "same serial, different
// content". So a version is stored only after it has been written, synced
// and read back to the same digest; a stored version is never served unless
// its bytes still hash to that digest; and a serial, once stored, cannot be
// stored again with other content.
//
// Layout under the store's directory:
//
//	objects/<digest>.zone
//	    The version's records, one RR per line with absolute owner
//	    names, in the canonical order zone.Digest is computed over. The
//	    file's bytes ARE the digested text, so sha256(file) == digest and
//	    a flipped or missing byte is found without parsing. Objects are
//	    content-addressed and shared by every manifest naming them.
//	manifests/<origin without trailing dot, or "root">/<serial, 10 digits>-<12 hex of digest>.json
//	    One per accepted version: who accepted it, from where, the gate
//	    report, whether and when it was published.
//	lock
//	    flock(2)ed by writers (Put, MarkPublished, Prune), so the agent
//	    and an operator's CLI on the same site cannot interleave a
//	    serial-reuse check, a prune and a new version.
//
// Every file is written to a temporary name in its directory, fsynced,
// renamed into place and the directory fsynced: after a crash a file is
// either absent or complete, never half-written (the .hk 2004 failure, on
// our own disk). Readers take no lock: they only ever see whole files.
//
// Diff compares two versions record by record (`regdr zone diff`).
// Store.Delta gives the IXFR difference between a stored version and the
// one being served from the objects' text alone: both are sorted lines, so
// one merge finds the changed ones and only those are parsed; the last few
// deltas are kept in memory for the secondaries that ask right after a
// NOTIFY. Store.Diff is the same for zoneserve.History.
package zonestore
