package pgctl

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL WAL position (pg_lsn). Positions compare as plain
// integers only on one timeline's history: a position on a newer timeline
// past the fork is not "after" the same number on the old one.
type LSN uint64

// ParseLSN reads the text form "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("LSN %q: want hex/hex", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("LSN %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// String is PostgreSQL's text form, accepted wherever SQL wants a pg_lsn.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xffffffff) }

// MarshalText makes LSNs read as "16/B374D848" in JSON and logs.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses the text form.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// parseNullLSN treats SQL NULL (nil) as zero: "no position yet".
func parseNullLSN(s *string) (LSN, error) {
	if s == nil {
		return 0, nil
	}
	return ParseLSN(*s)
}
