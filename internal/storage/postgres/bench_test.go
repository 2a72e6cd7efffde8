package postgres_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest"
)

func BenchmarkConsumeAuthCode(b *testing.B) {
	s, _, _ := openSchema(b)
	b.Cleanup(func() { _ = s.Close() })
	storagetest.BenchConsumeAuthCode(b, s)
}

func BenchmarkGetClient(b *testing.B) {
	s, _, _ := openSchema(b)
	b.Cleanup(func() { _ = s.Close() })
	storagetest.BenchGetClient(b, s)
}

func BenchmarkRedeemAuthCode(b *testing.B) {
	storagetest.BenchRedeemAuthCode(b, func(b *testing.B) storage.Store {
		s, _, _ := openSchema(b)
		b.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func BenchmarkRotateRefreshToken(b *testing.B) {
	storagetest.BenchRotateRefreshToken(b, func(b *testing.B) storage.Store {
		s, _, _ := openSchema(b)
		b.Cleanup(func() { _ = s.Close() })
		return s
	})
}
