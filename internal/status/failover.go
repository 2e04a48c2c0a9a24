package status

// FenceState is whether a site has fenced itself.
type FenceState struct{}
