package sqlite_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/storage/storagetest"
)

func TestPeople(t *testing.T) { storagetest.People(t, open(t)) }
