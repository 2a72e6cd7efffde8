package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// fhirJSON is the media type of every body the gateway writes itself.
const fhirJSON = "application/fhir+json"

// notFoundBody is the one answer for a resource that does not exist and for
// one the token may not see, so that the two cannot be told apart.
var notFoundBody = mustOutcome(fhir.Outcome(fhir.SeverityError, fhir.CodeNotFound, "Resource not found"))

func mustOutcome(o fhir.OperationOutcome) []byte {
	b, err := json.Marshal(o)
	if err != nil {
		panic(err) // static value; cannot fail
	}
	return b
}

// securityHeaders are set on every response.
func securityHeaders(hd http.Header) {
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
}

// writeOutcome writes an OperationOutcome with one issue.
func (h *Handler) writeOutcome(w http.ResponseWriter, status int, code, diagnostics string, expression ...string) {
	o := fhir.Outcome(fhir.SeverityError, code, diagnostics)
	if len(expression) > 0 {
		o = o.WithExpression(expression...)
	}
	writeBody(w, status, mustOutcome(o))
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", fhirJSON)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (h *Handler) writeNotFound(w http.ResponseWriter) {
	writeBody(w, http.StatusNotFound, notFoundBody)
}

// record writes a refusal audit event. A refusal is sent even when the
// event cannot be written (refusing is already the safe side); the failure
// is logged.
func (h *Handler) record(r *http.Request, ev audit.Event) {
	if err := h.opts.Auditor.Record(context.WithoutCancel(r.Context()), ev); err != nil {
		h.opts.Logger.ErrorContext(r.Context(), "gateway: audit of a refusal failed", "action", string(ev.Action), "error", err)
	}
}

// deny refuses with an OperationOutcome and audits the real reason.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, ev audit.Event, status int, code, diagnostics, reason string) {
	h.denyExpr(w, r, ev, status, code, diagnostics, reason, nil)
}

func (h *Handler) denyExpr(w http.ResponseWriter, r *http.Request, ev audit.Event, status int, code, diagnostics, reason string, expr []string) {
	ev.Outcome, ev.Reason = audit.Failure, reason
	h.record(r, ev)
	if status == http.StatusNotFound {
		h.writeNotFound(w)
		return
	}
	h.writeOutcome(w, status, code, diagnostics, expr...)
}

// refuseBody answers an unreadable or oversized request body.
func (h *Handler) refuseBody(w http.ResponseWriter, r *http.Request, ev audit.Event, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		h.deny(w, r, ev, http.StatusRequestEntityTooLarge, fhir.CodeTooCostly, "the request body is too large", "request body too large")
		return
	}
	h.deny(w, r, ev, http.StatusBadRequest, fhir.CodeInvalid, "the request body could not be read", "unreadable request body: "+err.Error())
}

// refuseAuth answers a failed token check: 400/401 with a challenge, or
// 503 when the revocation status is unknown.
func (h *Handler) refuseAuth(w http.ResponseWriter, r *http.Request, ev audit.Event, e *authError) {
	ev.Outcome = audit.Failure
	ev.Reason = e.Error()
	if e.code == "" && !e.serviceDown {
		ev.Reason = "no access token"
	}
	h.record(r, ev)
	if e.serviceDown {
		h.opts.Logger.ErrorContext(r.Context(), "gateway: refusing request", "error", e.cause)
		h.writeOutcome(w, http.StatusServiceUnavailable, fhir.CodeTransient, "the request cannot be checked now; try again later")
		return
	}
	h.challenge(w, e)
	code := fhir.CodeLogin
	if e.code == "invalid_request" {
		code = fhir.CodeInvalid
	}
	h.writeOutcome(w, e.status, code, e.description)
}

// refuseDecision answers a policy refusal: 404 when the decision hides the
// resource, else 403 insufficient_scope naming the missing scope.
func (h *Handler) refuseDecision(w http.ResponseWriter, r *http.Request, ev audit.Event, scheme string, d policy.Decision, entry string) {
	ev.Outcome = audit.Failure
	ev.Reason = d.Reason
	if entry != "" {
		ev.Reason = entry + ": " + d.Reason
	}
	h.record(r, ev)
	if d.NotFound && entry == "" {
		h.writeNotFound(w)
		return
	}
	desc := "the access token does not permit this request"
	if d.MissingScope != "" {
		desc = "insufficient scope: this request requires " + d.MissingScope
	}
	if entry != "" {
		desc = entry + " is not permitted"
		if d.MissingScope != "" {
			desc += ": it requires " + d.MissingScope
		}
	}
	params := fmt.Sprintf(`realm="fhir", error="insufficient_scope", error_description=%q`, desc)
	if d.MissingScope != "" {
		params += fmt.Sprintf(", scope=%q", d.MissingScope)
	}
	if scheme == schemeDPoP {
		w.Header().Add("WWW-Authenticate", "DPoP "+params)
	} else {
		w.Header().Add("WWW-Authenticate", "Bearer "+params)
	}
	var expr []string
	if entry != "" {
		expr = []string{entry}
	}
	h.writeOutcome(w, http.StatusForbidden, fhir.CodeForbidden, desc, expr...)
}

// handleLeak refuses a request carrying a token in its URL or form body,
// audits it and revokes the token when it is one of ours.
func (h *Handler) handleLeak(w http.ResponseWriter, r *http.Request, ev audit.Event, raw string) {
	ctx := context.WithoutCancel(r.Context())
	ev.Action, ev.Outcome, ev.Reason = ActionTokenLeaked, audit.Failure, "access token sent in the URL query or form body"
	claims, err := h.opts.Tokens.ParseAccessToken(raw, "")
	if err == nil {
		ev.TokenID, ev.ClientID, ev.UserID, ev.Patient = claims.JTI, claims.ClientID, claims.Subject, claims.Patient
		h.cache.remove(tokenKey(raw))
		if h.opts.Leaked != nil {
			if lerr := h.opts.Leaked.Leaked(ctx, claims); lerr != nil {
				h.opts.Logger.ErrorContext(ctx, "gateway: revoking a leaked token failed", "jti", claims.JTI, "error", lerr)
				ev.Reason += "; revocation failed"
			} else {
				ev.Reason += "; token revoked"
			}
		}
	} else {
		ev.Reason += "; not a valid token of ours"
	}
	h.record(r, ev)
	w.Header().Add("WWW-Authenticate", `Bearer realm="fhir", error="invalid_request", error_description="send the access token in the Authorization header only"`)
	h.writeOutcome(w, http.StatusBadRequest, fhir.CodeInvalid, "access tokens must be sent in the Authorization header only")
}
