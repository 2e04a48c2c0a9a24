package config

import "time"

// Default returns the settings a config starts from before the file is
// read. A value written in the file always wins, even when it is zero or
// invalid: a typo must be reported, not replaced by a default.
//
// Every gate default is chosen so that each incident in INCIDENTS.md
// would have been stopped; loosening one is a decision to write down.
func Default() *Config {
	return &Config{
		Etcd: Etcd{
			// One prefix per deployment lets a shared etcd hold several
			// (the lab runs many in one cluster).
			Prefix: "/regdr",
			// Long enough to cross a WAN to the witness with TLS setup;
			// short enough that the CLI says "etcd unreachable" before an
			// operator retypes the command.
			DialTimeout: Duration{2 * time.Second},
		},
		Gates: Gates{
			// RIPE NCC 2012 lost 43% and 54% of delegations in one version;
			// a real day's churn is well under 1%. 2% leaves headroom for
			// a bulk deletion run, which should need an override anyway.
			MaxRemovedPercent: 2,
			// Additions do less harm than removals (nothing resolving stops
			// resolving), so the budget is wider; a doubled origin (.se
			// 2009) adds 100% and still trips it.
			MaxAddedPercent: 10,
			// Changed NS/DS sets break resolution for the names they touch;
			// 5% allows a large registrar migrating its customers.
			MaxChangedPercent: 5,
			// Three days lets a site survive a long weekend without its
			// signer; shorter means fewer days to fix a broken signer,
			// longer means fewer versions accepted from a healthy one.
			MinSignatureValidity: Duration{72 * time.Hour},
			// The zone must match the database exactly (.hk 2004): any
			// difference is a half-written zone until shown otherwise.
			ReconcileTolerance: 0,
		},
		Agent: Agent{
			// One write a second bounds the lag measurement error to a
			// second at negligible WAL volume.
			HeartbeatInterval: Duration{time.Second},
			// WAN timers tolerate the packet loss and latency between
			// tokyo and osaka; "local" detects failure faster but would
			// flap across a real WAN.
			Gossip: "wan",
			// Ten seconds of lost lease fences the site: shorter fences a
			// healthy site on an etcd leader election, longer keeps a
			// dead site "active" for longer before failover may start.
			LeaseTTL: Duration{10 * time.Second},
		},
	}
}

// defaultTSIGAlgorithm is given to each tsig_keys entry that names none.
// HMAC-SHA256 is what every secondary implementation supports (RFC 8945
// requires it); HMAC-MD5 is deliberately not allowed at all.
const defaultTSIGAlgorithm = "hmac-sha256"
