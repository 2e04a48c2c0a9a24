package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// cronFields are the five fields of a classic crontab line, in order.
var cronFields = [5]struct {
	name     string
	min, max int
}{
	{"minute", 0, 59},
	{"hour", 0, 23},
	{"day of month", 1, 31},
	{"month", 1, 12},
	{"day of week", 0, 7}, // 0 and 7 are both Sunday, as in Vixie cron
}

// checkCron says why expr is not a five-field cron expression. Each field
// is a comma list of *, N, N-M, each optionally with /STEP. Names (jan,
// mon) and macros (@daily) are refused: a schedule should read the same to
// every tool that reads it, and numbers are the part all cron dialects
// agree on.
func checkCron(expr string) error {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return fmt.Errorf("cron %q has %d fields, want 5 (minute hour day-of-month month day-of-week)", expr, len(fields))
	}
	for i, f := range fields {
		spec := cronFields[i]
		if err := checkCronField(f, spec.min, spec.max); err != nil {
			return fmt.Errorf("cron %q: %s field %q: %w", expr, spec.name, f, err)
		}
	}
	return nil
}

func checkCronField(f string, lo, hi int) error {
	for item := range strings.SplitSeq(f, ",") {
		if item == "" {
			return errors.New("empty list item")
		}
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := cronNumber(step)
			if err != nil {
				return fmt.Errorf("step: %w", err)
			}
			if n < 1 || n > hi-lo+1 {
				return fmt.Errorf("step %d out of range 1-%d", n, hi-lo+1)
			}
		}
		if rng == "*" {
			continue
		}
		first, last, isRange := strings.Cut(rng, "-")
		a, err := cronValue(first, lo, hi)
		if err != nil {
			return err
		}
		if isRange {
			b, err := cronValue(last, lo, hi)
			if err != nil {
				return err
			}
			if a > b {
				return fmt.Errorf("range %d-%d runs backwards", a, b)
			}
		}
	}
	return nil
}

func cronValue(s string, lo, hi int) (int, error) {
	n, err := cronNumber(s)
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d out of range %d-%d", n, lo, hi)
	}
	return n, nil
}

func cronNumber(s string) (int, error) {
	if !isDigits(s) || len(s) > 3 {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return strconv.Atoi(s)
}
