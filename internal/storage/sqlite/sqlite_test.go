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
