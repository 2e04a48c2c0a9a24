// Package keys will hold the DNSSEC key inventory of each site, the sealed
// bundles that carry private keys to the other site through etcd
// (ciphertext only), and the possession proofs that show the standby can
// sign with them (issue 5). Until then the lab's keys exist only at the
// active site, and nothing here claims otherwise.
package keys
