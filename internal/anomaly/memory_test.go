package anomaly_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/anomaly/anomalytest"
)

func TestMemoryStoreSuite(t *testing.T) {
	anomalytest.RunStore(t, func(*testing.T) anomaly.Store { return anomaly.NewMemory(0) })
}
