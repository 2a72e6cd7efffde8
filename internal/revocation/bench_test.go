package revocation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/revocation"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// BenchmarkRevoked is the per-request cost at the gateway with 10 000
// revoked entries held.
func BenchmarkRevoked(b *testing.B) {
	ctx := context.Background()
	now := time.Now()
	src := &fakeList{}
	for i := range 10000 {
		src.add(storage.RevokedToken{Kind: storage.RevokedAccessToken, ID: fmt.Sprintf("j%d", i), RevokedAt: now, ExpiresAt: now.Add(time.Hour)})
	}
	c, err := revocation.New(revocation.Options{Source: src})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Poll(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Revoked(ctx, "live-jti", "live-family"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
