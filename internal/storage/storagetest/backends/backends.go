// Package backends opens every storage backend for feature tests that must
// hold on both: SQLite on a temporary file always, PostgreSQL (a fresh
// schema, dropped afterwards) when FHIRGATE_TEST_POSTGRES_DSN is set. It is
// imported only by _test.go files.
package backends

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/postgres"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

// DSNEnv names the environment variable holding the PostgreSQL test DSN.
const DSNEnv = "FHIRGATE_TEST_POSTGRES_DSN"

// Backend names a way to open a fresh store.
type Backend struct {
	Name string
	// Open returns a fresh, empty store closed (and dropped) when t ends.
	Open func(t testing.TB) storage.Store
}

// All returns SQLite and, when DSNEnv is set, PostgreSQL.
func All() []Backend {
	bs := []Backend{{Name: "sqlite", Open: OpenSQLite}}
	if os.Getenv(DSNEnv) != "" {
		bs = append(bs, Backend{Name: "postgres", Open: OpenPostgres})
	}
	return bs
}

// Run runs fn once per backend as a subtest; it logs when PostgreSQL is skipped.
func Run(t *testing.T, fn func(t *testing.T, open func(t testing.TB) storage.Store)) {
	t.Helper()
	if os.Getenv(DSNEnv) == "" {
		t.Log("PostgreSQL variant skipped: set " + DSNEnv)
	}
	for _, b := range All() {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.Open) })
	}
}

// OpenSQLite opens a SQLite store on a file in t.TempDir().
func OpenSQLite(t testing.TB) storage.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// OpenPostgres opens a PostgreSQL store in a fresh schema; it skips t when
// DSNEnv is unset.
func OpenPostgres(t testing.TB) storage.Store {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skip("PostgreSQL tests skipped: set " + DSNEnv)
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "fhirgate_test_" + hex.EncodeToString(b)
	s, err := postgres.OpenSchema(context.Background(), dsn, schema)
	if err != nil {
		t.Fatalf("postgres.OpenSchema: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return s
}
