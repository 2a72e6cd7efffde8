package filesink

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
)

// go test -run XXX -bench . ./internal/audit/filesink
func BenchmarkDurableFile(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	audittest.BenchmarkTrail(b, s, 64)
}
