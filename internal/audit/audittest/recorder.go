// Package audittest provides an in-memory Auditor for tests.
package audittest

import (
	"context"
	"sync"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// Recorder keeps every event it is given. Set Fail to make Record fail.
type Recorder struct {
	mu     sync.Mutex
	events []audit.Event
	Fail   error
}

// Record implements audit.Auditor.
func (r *Recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Fail != nil {
		return r.Fail
	}
	r.events = append(r.events, e)
	return nil
}

// Events returns a copy of the recorded events.
func (r *Recorder) Events() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

// Has reports whether an event with action and outcome was recorded.
func (r *Recorder) Has(action audit.Action, outcome audit.Outcome) bool {
	for _, e := range r.Events() {
		if e.Action == action && e.Outcome == outcome {
			return true
		}
	}
	return false
}
