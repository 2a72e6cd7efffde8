package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

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
//
// A request audited at its answer (auditAtAnswer) needs nothing more unless
// the answer never reached auditAnswer (the upstream failed, its answer was
// refused, or the event could not be written): then its one event is queued
// here with the status the client got.
func (h *Handler) auditOutcome(ctx context.Context, x *exchange, status int) {
	if status == 0 {
		status = http.StatusBadGateway // nothing was written: the client went away
	}
	if x.auditAtAnswer {
		if !x.answerAudited {
			if err := audit.Enqueue(context.WithoutCancel(ctx), h.opts.Auditor, answerEvent(x.event, h.opts.Now(), status)); err != nil {
				h.opts.Logger.ErrorContext(ctx, "gateway: audit of an unanswered request failed", "error", err)
			}
		}
		return
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

// answerEvent is the one event of a request audited at its answer: its
// fhir.request event with the status the client got.
func answerEvent(ev audit.Event, now time.Time, status int) audit.Event {
	ev.Time, ev.Reason = now, audit.WithStatus(ev.Reason, status)
	ev.Outcome = audit.Success
	if status >= 400 {
		ev.Outcome = audit.Failure
	}
	return ev
}

// errAuditUnavailable refuses an answer whose audit event could not be
// written: nothing is disclosed unaudited.
var errAuditUnavailable = errors.New("gateway: the answer cannot be audited")

// auditAnswer records the one event of a request audited at its answer,
// durably, after modifyResponse has settled the answer and before the
// reverse proxy sends it.
func (h *Handler) auditAnswer(resp *http.Response) error {
	x, _ := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if x == nil || !x.auditAtAnswer {
		return nil
	}
	ctx := resp.Request.Context()
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), answerEvent(x.event, h.opts.Now(), resp.StatusCode)); err != nil {
		h.opts.Logger.ErrorContext(ctx, "gateway: audit failed; withholding the answer", "error", err)
		return errAuditUnavailable
	}
	x.answerAudited = true
	return nil
}
