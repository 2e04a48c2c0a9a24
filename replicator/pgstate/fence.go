package pgstate

import (
	"context"
	"fmt"
)

// Fence makes a primary refuse writes: default_transaction_read_only for
// every new transaction, then every other client session is ended, so no
// session that began read-write survives (their open transactions were
// never acknowledged). A standby is left alone: it takes no writes. A
// superuser session could still SET transaction_read_only = off; a real
// registry application logs in as the non-superuser registry_app role.
func Fence(ctx context.Context, q Querier) (fenced bool, err error) {
	var inRecovery bool
	if err := q.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return false, fmt.Errorf("fence: %w", err)
	}
	if inRecovery {
		return false, nil
	}
	for _, s := range []string{
		"ALTER SYSTEM SET default_transaction_read_only = on",
		"SELECT pg_reload_conf()",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
	} {
		if _, err := q.Exec(ctx, s); err != nil {
			return false, fmt.Errorf("fence: %s: %w", s, err)
		}
	}
	return true, nil
}

// Unfence resets default_transaction_read_only.
func Unfence(ctx context.Context, q Querier) error {
	for _, s := range []string{"ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()"} {
		if _, err := q.Exec(ctx, s); err != nil {
			return fmt.Errorf("unfence: %s: %w", s, err)
		}
	}
	return nil
}

// Fenced reports whether the server's configuration makes transactions
// read-only by default.
func Fenced(ctx context.Context, q Querier) (bool, error) {
	var v string
	if err := q.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = 'default_transaction_read_only'").Scan(&v); err != nil {
		return false, err
	}
	return v == "on", nil
}
