package status

// KeysState is a site's DNSSEC key inventory and possession proofs.
type KeysState struct{}
