// Package keys carries DNSSEC key material between regdr's data sites and
// proves that each site can sign with it (issue 5).
//
// The parts, each in its own package:
//
//   - inventory: the key pairs a site holds (BIND key directory backend,
//     behind a Backend interface so an HSM backend can be added);
//   - identity: each site's age X25519 identity (bundles are encrypted to
//     it) and Ed25519 key (bundles and receipts are signed with it);
//   - bundle: sealing pairs for one receiving site, opening them there
//     (signature checked against the config before anything is
//     decrypted, replays refused) and installing them atomically;
//   - proof: the possession proof and its signed receipt.
//
// This package is the glue to etcd: where bundles, sequence numbers,
// receipts and inventories live, the Sender and Receiver that move keys,
// Readiness (the facts the key-readiness gate and the failover preflight
// decide on) and Status (what `regdr keys status` shows).
//
// etcd only ever holds ciphertext and public facts: tags, algorithms,
// public key digests, signed receipts. Private key bytes are never logged.
package keys
