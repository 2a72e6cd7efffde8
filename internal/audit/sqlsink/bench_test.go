package sqlsink

import (
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
)

// go test -run XXX -bench . ./internal/audit/sqlsink
func BenchmarkDurableSQLite(b *testing.B) {
	s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	audittest.BenchmarkTrail(b, s, 64)
}

func BenchmarkDurablePostgres(b *testing.B) {
	s, _ := openPostgres(b)
	audittest.BenchmarkTrail(b, s, 64)
}
