package gateway

import (
	"context"
	"net/http"
	"slices"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
)

// maxAuditedPatients bounds the per-patient outcome events of one request.
const maxAuditedPatients = 100

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

// disclosesPatients reports whether a request's answer may hold patient
// data of patients the request does not name: reads, searches and history
// (user/ and system/ scopes are audited per patient from the response).
func disclosesPatients(r fhir.Request) bool {
	switch r.Interaction {
	case fhir.Read, fhir.VRead, fhir.SearchType, fhir.SearchCompartment, fhir.SearchSystem,
		fhir.HistoryInstance, fhir.HistoryType, fhir.HistorySystem, fhir.Operation:
		return true
	}
	return false
}

// collectPatients records the patients whose compartment the (already
// checked) response body touches.
func (x *exchange) collectPatients(body []byte) {
	add := func(res []byte) {
		ids, err := fhir.ReferencesPatient(res)
		if err != nil {
			return
		}
		for _, id := range ids {
			switch {
			case slices.Contains(x.patients, id):
			case len(x.patients) < maxAuditedPatients:
				x.patients = append(x.patients, id)
			default:
				x.morePatients++
			}
		}
	}
	typ, _, err := fhir.ResourceIdentity(body)
	if err != nil {
		return
	}
	if typ != "Bundle" {
		add(body)
		return
	}
	_, _, _ = fhir.FilterBundle(body, func(res []byte) (bool, error) {
		if t, _, err := fhir.ResourceIdentity(res); err == nil && t == "Bundle" {
			x.collectPatients(res) // batch responses hold searchsets
		} else {
			add(res)
		}
		return true, nil
	})
}

// auditOutcome records what a forwarded request ended with: one event, or
// with auditPatients one per patient the response disclosed. The response
// is already on its way, so the events are queued without waiting for
// durability (audit.Enqueue: the write-ahead fhir.request event was durable
// before anything was forwarded), and a failure is logged, not answered.
func (h *Handler) auditOutcome(ctx context.Context, x *exchange, status int) {
	if status == 0 {
		status = http.StatusBadGateway // nothing was written: the client went away
	}
	ev := x.event
	ev.Time, ev.Action, ev.Reason = h.opts.Now(), ActionFHIRResponse, "HTTP "+strconv.Itoa(status)
	ev.Outcome = audit.Success
	if status >= 400 {
		ev.Outcome = audit.Failure
	}
	record := func(e audit.Event) {
		if err := audit.Enqueue(context.WithoutCancel(ctx), h.opts.Auditor, e); err != nil {
			h.opts.Logger.ErrorContext(ctx, "gateway: audit of a response outcome failed", "error", err)
		}
	}
	if len(x.patients) == 0 {
		record(ev)
		return
	}
	for i, p := range x.patients {
		e := ev
		e.Patient = p
		if i == len(x.patients)-1 && x.morePatients > 0 {
			e.Reason += "; " + strconv.Itoa(x.morePatients) + " more patients not listed"
		}
		record(e)
	}
}
