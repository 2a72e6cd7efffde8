package audittest

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

func TestMemorySinkConformance(t *testing.T) {
	RunSinkSuite(t, SinkHarness{
		Open: func(*testing.T) chain.Sink { return NewMemorySink() },
		Rewrite: func(_ *testing.T, s chain.Sink, node string, es []chain.Entry) {
			s.(*MemorySink).Rewrite(node, es)
		},
	})
}
