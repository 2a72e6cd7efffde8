package gateway

import (
	"context"
	"net/http"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// statusWriter remembers the status sent to the client. Unwrap lets the
// reverse proxy reach the underlying writer's Flush and Hijack.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap returns the wrapped writer (http.ResponseController).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// auditOutcome records what a forwarded request ended with. The response
// is already on its way, so a failure to record is logged, not answered.
func (h *Handler) auditOutcome(ctx context.Context, ev audit.Event, status int) {
	if status == 0 {
		status = http.StatusBadGateway // nothing was written: the client went away
	}
	ev.Time, ev.Action, ev.Reason = h.opts.Now(), ActionFHIRResponse, "HTTP "+strconv.Itoa(status)
	ev.Outcome = audit.Success
	if status >= 400 {
		ev.Outcome = audit.Failure
	}
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "gateway: audit of a response outcome failed", "error", err)
	}
}
