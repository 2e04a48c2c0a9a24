// Package gates holds the zone publication safety gates: the checks every
// version of a zone must pass before regdr stores, serves or replicates it.
//
// Each gate is a pure function of the candidate zone, the previous accepted
// version, the last published version, a validation instant and what the
// registry database expects. Gates do no I/O and read no clock: the caller
// passes Input.Now, so an archived version can be re-checked "as of" the
// time it was published. A gate returns a Result that names the exact owner
// names and records that failed, with file:line when the zone was parsed
// from a file, because an operator woken at night must see "kumo.test.:
// missing glue for ns.kumo.test." and not "apex gate failed".
//
// Every gate traces to an outage in INCIDENTS.md; the paragraph at the top
// of each gate's file says which one and what the gate would have stopped:
//
//	origin     .se 2009: doubled origin, out-of-zone names
//	apex       .hk 2004 / RIPE 2012: a zone that loads but cannot be served
//	serial     RIPE 2012: serial regressions, same serial different content
//	budget     .se 2009, RIPE 2012, RIPE 2017: empty or drastically changed zones
//	reconcile  .hk 2004: the zone does not match the registry database
//	required   RIPE 2012: lost RFC 2317 CNAMEs, vanished DS records
//	dnssec     .se 2009: a published zone with broken signatures
//	zonemd     RFC 8976: the zone is not the one its producer digested
//
// Use: build the list once with Default(cfg) (an explicit, ordered list; no
// registration at init time), then Run(ctx, gates, &Input{...}) per
// version. Run indexes the zone once (owner names, RRsets, delegation
// points, occluded names) and hands that Index to every gate. A gate that
// cannot decide (no previous version, no expectation, unsigned zone) says
// "skip" with a reason; a skip is never reported as a pass.
package gates
