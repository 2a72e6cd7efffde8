package pgpool_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirgate/fhirgate/internal/pgpool"
)

func dsn(t *testing.T) string {
	t.Helper()
	d := os.Getenv("FHIRGATE_TEST_POSTGRES_DSN")
	if d == "" {
		t.Skip("PostgreSQL tests skipped: set FHIRGATE_TEST_POSTGRES_DSN (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	return d
}

// withParam adds a runtime parameter (key=value) to a URL or key=value DSN.
func withParam(d, kv string) string {
	switch {
	case !strings.Contains(d, "://"):
		return d + " " + kv
	case strings.Contains(d, "?"):
		return d + "&" + kv
	default:
		return d + "?" + kv
	}
}

func show(t *testing.T, cfg *pgxpool.Config, setting string) string {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var v string
	if err := pool.QueryRow(ctx, "SHOW "+setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDurableCommitsTurnsOffIntoOn(t *testing.T) {
	d := dsn(t)
	for param, want := range map[string]string{"off": "on", "local": "local", "on": "on", "remote_apply": "remote_apply"} {
		cfg, err := pgpool.Config(withParam(d, "synchronous_commit="+param), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := show(t, cfg, "synchronous_commit"); got != want {
			t.Errorf("synchronous_commit %q in the DSN: the pool's connections use %q, want %q", param, got, want)
		}
	}
}

func TestConfigSetsSchema(t *testing.T) {
	cfg, err := pgpool.Config(dsn(t), "fhirgate_pgpool_test")
	if err != nil {
		t.Fatal(err)
	}
	if got := show(t, cfg, "search_path"); got != "fhirgate_pgpool_test" {
		t.Fatalf("search_path = %q", got)
	}
}

func TestConfigRefusesBadInput(t *testing.T) {
	for _, schema := range []string{"Public", "a;drop table x", "1abc", `"quoted"`, strings.Repeat("a", 64)} {
		if _, err := pgpool.Config("postgres://127.0.0.1/test", schema); err == nil {
			t.Errorf("schema %q accepted", schema)
		}
	}
	if _, err := pgpool.Config("postgres://127.0.0.1:notaport/test", ""); err == nil {
		t.Error("malformed DSN accepted")
	}
}
