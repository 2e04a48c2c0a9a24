// Package zonesign signs a DNS zone with DNSSEC and writes it to disk.
//
// It holds the three pieces a zone generator needs and nothing more:
//
//   - keys: BIND-format K<origin>+<alg>+<tag>.key/.private pairs, generated
//     (GenerateKey) or loaded back (LoadKeys). A loaded key is proved to
//     match its DNSKEY by signing and verifying a probe, because a signer
//     holding the wrong private key publishes a zone that validates nowhere
//     (INCIDENTS.md, .se 2009: the site that takes over must be able to sign).
//   - Sign: strips any DNSSEC records from its input, adds the DNSKEY RRset,
//     an NSEC or NSEC3 chain (RFC 4034, RFC 5155 with the RFC 9276
//     parameters) and RRSIGs, and returns the zone in canonical order
//     (RFC 4034 §6.1). Signing runs on several workers.
//   - WriteZone / WriteFileAtomic: one RR per line, absolute names, and a
//     file replaced by rename so that a reader never loads half a zone
//     (INCIDENTS.md, .hk 2004).
//
// Private key material never reaches a log line or an error message: Key
// implements fmt.Stringer, fmt.GoStringer and slog.LogValuer with public
// data only.
package zonesign
