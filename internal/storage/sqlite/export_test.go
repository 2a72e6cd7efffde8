package sqlite

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
)

// SchemaVersion returns the number of applied migrations recorded in the
// database at path, failing t unless they are numbered 1..n.
func SchemaVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, maxV int
	if err := db.QueryRowContext(context.Background(),
		`SELECT COUNT(*), COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != maxV {
		t.Fatalf("schema_migrations holds %d rows up to version %d", n, maxV)
	}
	return n
}

// LatestVersion is the number of embedded migrations.
func LatestVersion() int {
	ms, err := loadMigrations()
	if err != nil {
		panic(err)
	}
	return len(ms)
}

// WriteSynchronous returns the synchronous setting of s's write connection
// (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA).
func WriteSynchronous(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.w.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
