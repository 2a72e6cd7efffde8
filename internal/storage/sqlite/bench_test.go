package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest"
)

func benchStore(b *testing.B) *sqlite.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkConsumeAuthCode(b *testing.B) { storagetest.BenchConsumeAuthCode(b, benchStore(b)) }

func BenchmarkGetClient(b *testing.B) { storagetest.BenchGetClient(b, benchStore(b)) }

func BenchmarkRedeemAuthCode(b *testing.B) {
	storagetest.BenchRedeemAuthCode(b, func(b *testing.B) storage.Store { return benchStore(b) })
}

func BenchmarkRotateRefreshToken(b *testing.B) {
	storagetest.BenchRotateRefreshToken(b, func(b *testing.B) storage.Store { return benchStore(b) })
}
