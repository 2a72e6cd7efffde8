package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest"
)

func open(t *testing.T) storage.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) { storagetest.Run(t, open) }

// TestWritesAreDurable checks that the write connection fsyncs each commit
// (synchronous=FULL): with NORMAL a power loss could roll back a revocation
// or a single-use redemption that the server had already confirmed.
func TestWritesAreDurable(t *testing.T) {
	s := open(t).(*sqlite.Store)
	// A write first, so the check sees the connection the writes use.
	if err := s.CreateUser(context.Background(), &storage.User{ID: "u1", Username: "u1", Role: storage.RolePatient}); err != nil {
		t.Fatal(err)
	}
	if got := sqlite.WriteSynchronous(t, s); got != 2 {
		t.Fatalf("write connection synchronous = %d, want 2 (FULL)", got)
	}
}
