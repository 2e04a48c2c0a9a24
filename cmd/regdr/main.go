// Command regdr is both the per-site agent (`regdr agent`) and the
// operators' command line (`regdr status`, `regdr lab up`, ...). This
// package is only the command tree, flags and output formatting; the work
// lives in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes. Scripts branch on these, so they never change meaning.
const (
	exitOK       = 0
	exitFailed   = 1 // the operation ran and found a problem, or failed
	exitUsage    = 2 // bad arguments or flags
	exitNoAccess = 3 // nothing to report from: etcd and every agent unreachable
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	code := exitFailed
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if isUsage(err) {
		code = exitUsage
	}
	if err.Error() != "" {
		fmt.Fprintln(os.Stderr, "regdr: "+err.Error())
	}
	if code == exitUsage {
		fmt.Fprintln(os.Stderr, "Run 'regdr --help' (or 'regdr COMMAND --help') for usage.")
	}
	os.Exit(code)
}
