package lab

import "context"

// startResolver starts Unbound as a validating resolver for the lab TLD.
func (l *Lab) startResolver(ctx context.Context, step func(string, ...any)) error { return nil }
