package postgres_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/storage/storagetest"
)

func TestPeople(t *testing.T) {
	s, _, _ := openSchema(t)
	t.Cleanup(func() { s.Close() })
	storagetest.People(t, s)
}
