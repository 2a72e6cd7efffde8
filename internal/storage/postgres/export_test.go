package postgres

import (
	"context"
	"testing"
)

// SynchronousCommit returns the synchronous_commit setting of a connection
// from s's pool.
func SynchronousCommit(t *testing.T, s *Store) string {
	t.Helper()
	var v string
	if err := s.pool.QueryRow(context.Background(), `SHOW synchronous_commit`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
