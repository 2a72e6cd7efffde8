package sqlsink

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// DSNEnv names the PostgreSQL test database; tests are skipped when unset.
const DSNEnv = "FHIRGATE_TEST_POSTGRES_DSN"

var schemaSeq atomic.Int64

// openPostgres opens a sink in a fresh schema dropped at test end.
func openPostgres(t testing.TB) (*Postgres, string) {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL audit sink", DSNEnv)
	}
	ctx := context.Background()
	schema := fmt.Sprintf("audit_t%d_%d", time.Now().UnixNano()%1e12, schemaSeq.Add(1))
	s, err := OpenPostgres(ctx, dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := s.pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema: %v", err)
		}
		s.Close()
	})
	return s, schema
}

func TestPostgresConformance(t *testing.T) {
	if os.Getenv(DSNEnv) == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL audit sink", DSNEnv)
	}
	schemas := map[chain.Sink]string{}
	audittest.RunSinkSuite(t, audittest.SinkHarness{
		Open: func(t *testing.T) chain.Sink {
			s, schema := openPostgres(t)
			ns := noClose{s}
			schemas[ns] = schema
			return ns
		},
		Rewrite: func(t *testing.T, s chain.Sink, node string, es []chain.Entry) {
			pool := s.(noClose).Postgres.pool
			ctx := context.Background()
			if _, err := pool.Exec(ctx, "DELETE FROM audit_events WHERE node = $1", node); err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if _, err := pool.Exec(ctx, "INSERT INTO audit_events ("+columnList+") VALUES ($1"+placeholders(2, len(columns))+")", entryArgs(e)...); err != nil {
					t.Fatal(err)
				}
			}
		},
		Reopen: func(t *testing.T, s chain.Sink) chain.Sink {
			schema := schemas[s]
			s2, err := OpenPostgres(context.Background(), os.Getenv(DSNEnv), schema)
			if err != nil {
				t.Fatal(err)
			}
			return s2
		},
	})
}

// noClose leaves closing to openPostgres's cleanup (which drops the schema first).
type noClose struct{ *Postgres }

func (noClose) Close() error { return nil }

func placeholders(from, to int) string {
	out := ""
	for i := from; i <= to; i++ {
		out += fmt.Sprintf(", $%d", i)
	}
	return out
}
