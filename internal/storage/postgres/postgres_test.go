package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/postgres"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest"
)

// DSNEnv names the environment variable holding the test database DSN.
const DSNEnv = "FHIRGATE_TEST_POSTGRES_DSN"

func dsn(t testing.TB) string {
	t.Helper()
	d := os.Getenv(DSNEnv)
	if d == "" {
		t.Skip("PostgreSQL tests skipped: set " + DSNEnv + " (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	return d
}

// freshSchema returns a new random schema name, dropped when t ends.
func freshSchema(t testing.TB, dsn string) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "fhirgate_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
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
	return schema
}

func openSchema(t testing.TB) (*postgres.Store, string, string) {
	t.Helper()
	d := dsn(t)
	schema := freshSchema(t, d)
	s, err := postgres.OpenSchema(context.Background(), d, schema)
	if err != nil {
		t.Fatalf("OpenSchema: %v", err)
	}
	return s, d, schema
}

func TestConformance(t *testing.T) {
	dsn(t) // skip once, visibly, when no database is configured
	storagetest.Run(t, func(t *testing.T) storage.Store { s, _, _ := openSchema(t); return s })
}

// TestCommitsAreDurable opens the store with a DSN that turns
// synchronous_commit off for its sessions: the store turns it back on, so a
// crash cannot roll back a commit it confirmed, and keeps a stronger
// setting as it is.
func TestCommitsAreDurable(t *testing.T) {
	d := dsn(t)
	for param, want := range map[string]string{"off": "on", "local": "local", "remote_apply": "remote_apply"} {
		t.Run(param, func(t *testing.T) {
			withParam := d + "?synchronous_commit=" + param
			switch {
			case !strings.Contains(d, "://"):
				withParam = d + " synchronous_commit=" + param
			case strings.Contains(d, "?"):
				withParam = d + "&synchronous_commit=" + param
			}
			s, err := postgres.OpenSchema(context.Background(), withParam, freshSchema(t, d))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := postgres.SynchronousCommit(t, s); got != want {
				t.Fatalf("synchronous_commit = %q with %q in the DSN, want %q", got, param, want)
			}
		})
	}
}
