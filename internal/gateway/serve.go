package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

// exchange is the state of one proxied request, carried to the reverse
// proxy's Rewrite and ModifyResponse through the request context.
type exchange struct {
	req      fhir.Request
	decision policy.Decision
	v        *verified
	up       *upstream.Upstream
	relPath  string
	// rawQuery is the query to forward: the parsed and checked one,
	// re-encoded, with any constraints added.
	rawQuery string
	// body replaces the request body when set (writes, batches, POST _search).
	body    []byte
	inspect bool
	// conditional marks a create with If-None-Exist.
	conditional bool
	event       audit.Event // the request's audit event, reused for response audits
	// auditAtAnswer: the request is audited once, when the upstream has
	// answered and before the answer is sent (auditAnswer), instead of
	// write-ahead plus an outcome event; answerAudited once that is done.
	auditAtAnswer bool
	answerAudited bool
	// auditPatients: the token has no patient context and the request does
	// not name one, so the outcome is audited per patient the response
	// discloses (patients, capped at maxAuditedPatients; morePatients beyond).
	auditPatients bool
	patients      []string
	morePatients  int
}

type exchangeKey struct{}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	if h.handleCORS(w, r) {
		return
	}
	rel, ok := h.relative(r.URL.Path)
	if !ok {
		h.writeOutcome(w, http.StatusNotFound, fhir.CodeNotFound, "not found")
		return
	}
	switch rel {
	case "/metadata":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.serveMetadata(w, r)
			return
		}
	case "/.well-known/smart-configuration":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.serveSMARTConfiguration(w, r)
			return
		}
	}
	ev := h.baseEvent(r)

	// A token in the URL or a form body is refused and treated as leaked.
	var form url.Values
	var formBody []byte
	if r.Method == http.MethodPost && isForm(r) {
		b, err := h.readBody(w, r)
		if err != nil {
			h.refuseBody(w, r, ev, err)
			return
		}
		formBody = b
		if form, err = url.ParseQuery(string(b)); err != nil {
			h.deny(w, r, ev, http.StatusBadRequest, fhir.CodeInvalid, "the form body is malformed", "malformed form body")
			return
		}
	}
	if leaked := leakedToken(r, form); leaked != "" {
		h.handleLeak(w, r, ev, leaked)
		return
	}

	scheme, raw, aerr := credentials(r)
	if aerr == nil {
		var v *verified
		v, aerr = h.authenticate(r, scheme, raw)
		if aerr == nil {
			h.authorized(w, r, ev, v, scheme, rel, form, formBody)
			return
		}
	}
	h.refuseAuth(w, r, ev, aerr)
}

// relative returns the path below the FHIR base ("" for the base itself).
func (h *Handler) relative(p string) (string, bool) {
	if h.basePath == "" {
		return p, true
	}
	rest, ok := strings.CutPrefix(p, h.basePath)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	return rest, true
}

// authorized handles a request whose token passed: classify, decide, check
// writes, audit, forward.
func (h *Handler) authorized(w http.ResponseWriter, r *http.Request, ev audit.Event, v *verified, scheme, rel string, form url.Values, formBody []byte) {
	c := v.claims
	ev.UserID, ev.ClientID, ev.FHIRUser, ev.Scope, ev.TokenID, ev.Patient = c.Subject, c.ClientID, c.FHIRUser, c.Scope, c.JTI, c.Patient
	if h.opts.Admit != nil {
		if refuse, reason := h.opts.Admit(r, c.ClientID, c.Subject); refuse != nil {
			ev.Outcome, ev.Reason = audit.Failure, reason
			h.record(r, ev)
			refuse(w)
			return
		}
	}

	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// What the gateway cannot parse it cannot check; an upstream might
		// read it differently (";" separators, bad escapes).
		h.deny(w, r, ev, http.StatusBadRequest, fhir.CodeInvalid, "the query string is malformed", "malformed query: "+err.Error())
		return
	}
	classifyQuery := query
	isSearchPost := form != nil && (strings.HasSuffix(rel, "/_search") || rel == "/_search")
	var req fhir.Request
	if isSearchPost {
		classifyQuery = mergeValues(query, form)
	}
	req, err = fhir.Classify(r.Method, rel, classifyQuery)
	if err != nil {
		code, status := fhir.CodeInvalid, http.StatusBadRequest
		if errors.Is(err, fhir.ErrUnsupported) {
			code = fhir.CodeNotSupported
		}
		h.deny(w, r, ev, status, code, "the request is not a supported FHIR interaction", err.Error())
		return
	}
	if ev.Patient == "" {
		ev.Patient = patientOf(req)
	}
	ev.Interaction, ev.ResourceType, ev.ResourceID = string(req.Interaction), req.Type, req.ID
	ev.Binding = audit.BindingNone
	switch {
	case c.Cnf["jkt"] != "":
		ev.Binding = audit.BindingDPoP
	case c.Cnf["x5t#S256"] != "":
		ev.Binding = audit.BindingMTLS
	}
	// Forward exactly what was parsed and checked, never the raw text.
	x := &exchange{req: req, v: v, relPath: rel, rawQuery: query.Encode()}
	if form != nil {
		x.body = []byte(form.Encode())
	}

	var decision policy.Decision
	var entries []fhir.BundleEntryRequest
	if req.Interaction == fhir.Batch {
		body, err := h.readBody(w, r)
		if err != nil {
			h.refuseBody(w, r, ev, err)
			return
		}
		x.body = body
		kind, ents, err := fhir.ClassifyBundle(body)
		if err != nil {
			var ee *fhir.EntryError
			expr := []string(nil)
			if errors.As(err, &ee) {
				expr = []string{fmt.Sprintf("Bundle.entry[%d]", ee.Index)}
			}
			h.denyExpr(w, r, ev, http.StatusBadRequest, fhir.CodeInvalid, "the Bundle cannot be processed", err.Error(), expr)
			return
		}
		req.Interaction, x.req.Interaction, entries = kind, kind, ents
		ev.Interaction = string(kind)
		reqs := make([]fhir.Request, len(ents))
		for i, e := range ents {
			reqs[i] = e.Request
		}
		var idx int
		decision, idx = policy.DecideBundle(v.principal, reqs)
		if !decision.Allow {
			h.refuseDecision(w, r, ev, scheme, decision, fmt.Sprintf("Bundle.entry[%d]", idx))
			return
		}
		// Search entries get their constraints like top-level searches.
		if x.body, _, err = constrainBundleSearches(v.principal, x.body, ents); err != nil {
			h.deny(w, r, ev, http.StatusBadRequest, fhir.CodeInvalid, "the Bundle cannot be processed", err.Error())
			return
		}
	} else {
		decision = policy.Decide(v.principal, req)
		if !decision.Allow {
			h.refuseDecision(w, r, ev, scheme, decision, "")
			return
		}
	}
	x.decision = decision

	x.up = h.router.Route(routePath(rel))
	if x.up == nil {
		h.deny(w, r, ev, http.StatusNotFound, fhir.CodeNotFound, "not found", "no upstream for path")
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.opts.UpstreamTimeout)
	defer cancel()

	// Writes must stay inside what the token may touch.
	if ok := h.checkWrites(ctx, w, r, ev, x, entries); !ok {
		return
	}
	// Constraints on searches: add the patient parameter and granular queries.
	if isSearch(req.Interaction) {
		target := query
		if isSearchPost {
			target = form
		}
		if changed := applyConstraints(target, req.Type, decision.Constraints); changed {
			if isSearchPost {
				x.body = []byte(form.Encode())
			} else {
				x.rawQuery = query.Encode()
			}
		}
	}
	x.inspect = needsInspection(req, decision.Constraints, classifyQuery)
	if !h.opts.SkipOutcomeAudit && ev.Patient == "" && disclosesPatients(req) {
		x.auditPatients, x.inspect = true, true
	}
	if x.inspect && (query.Has("_format") || query.Has("_pretty")) {
		query.Del("_format")
		query.Del("_pretty")
		x.rawQuery = query.Encode()
	}

	ev.Outcome, ev.Reason = audit.Success, req.String()
	x.event = ev
	// A read-only request about a known patient is audited once, with its
	// answer, durably before the answer is sent (auditAnswer); forwarding it
	// changes nothing upstream. Everything else is audited write-ahead:
	// nothing is forwarded unless it is recorded.
	x.auditAtAnswer = readOnly(req.Interaction) && !x.auditPatients
	if !x.auditAtAnswer {
		if err := h.opts.Auditor.Record(context.WithoutCancel(r.Context()), ev); err != nil {
			h.opts.Logger.ErrorContext(r.Context(), "gateway: audit failed; refusing request", "error", err)
			h.writeOutcome(w, http.StatusServiceUnavailable, fhir.CodeTransient, "the request cannot be recorded; try again later")
			return
		}
	}
	if x.body == nil && r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxRequestBytes)
	}
	if h.opts.SkipOutcomeAudit && !x.auditAtAnswer {
		h.proxies[x.up].ServeHTTP(w, r.WithContext(context.WithValue(ctx, exchangeKey{}, x)))
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	h.proxies[x.up].ServeHTTP(sw, r.WithContext(context.WithValue(ctx, exchangeKey{}, x)))
	h.auditOutcome(r.Context(), x, sw.status)
}

// readOnly reports whether forwarding an interaction changes nothing
// upstream. Operations may, so they are not read-only.
func readOnly(i fhir.Interaction) bool {
	switch i {
	case fhir.Read, fhir.VRead, fhir.SearchType, fhir.SearchSystem, fhir.SearchCompartment,
		fhir.HistoryInstance, fhir.HistoryType, fhir.HistorySystem, fhir.Capabilities:
		return true
	}
	return false
}

// routePath is the path used to pick an upstream.
func routePath(rel string) string {
	if rel == "" {
		return "/"
	}
	return rel
}

func isSearch(i fhir.Interaction) bool {
	return i == fhir.SearchType || i == fhir.SearchCompartment
}

// needsInspection reports whether the response must be buffered and checked.
func needsInspection(req fhir.Request, c policy.Constraints, q url.Values) bool {
	if c.Patient != "" || len(c.Queries) > 0 {
		return true
	}
	switch req.Interaction {
	case fhir.Create, fhir.Update, fhir.Patch, fhir.Delete:
		return false
	case fhir.Read, fhir.VRead, fhir.SearchType, fhir.SearchCompartment, fhir.HistoryInstance, fhir.HistoryType:
		// Only resources of the permitted type come back, unless the
		// client asks for more.
		for k := range q {
			if strings.HasPrefix(k, "_include") || strings.HasPrefix(k, "_revinclude") || strings.HasPrefix(k, "_contained") {
				return true
			}
		}
		return false
	}
	return true // system level, operations, batches: anything may come back
}

// patientOf names the patient a request is about when the token has no
// patient context (user and system scopes), for the audit trail.
func patientOf(r fhir.Request) string {
	switch {
	case r.Type == "Patient" && r.ID != "":
		return r.ID
	case r.CompartmentType == "Patient":
		return r.CompartmentID
	}
	for _, p := range []string{"patient", "subject"} {
		if v := r.Query.Get(p); v != "" {
			if id, ok := fhir.PatientReferenceID(v); ok {
				return id
			}
			if p == "patient" && fhir.ValidID(v) {
				return v
			}
		}
	}
	return ""
}

func mergeValues(a, b url.Values) url.Values {
	out := make(url.Values, len(a)+len(b))
	for k, v := range a {
		out[k] = append([]string(nil), v...)
	}
	for k, v := range b {
		out[k] = append(out[k], v...)
	}
	return out
}

// readBody reads the whole request body within the size limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxRequestBytes))
}

func (h *Handler) baseEvent(r *http.Request) audit.Event {
	ev := audit.Event{
		Time:      h.opts.Now(),
		Action:    ActionFHIRRequest,
		SourceIP:  httpx.ClientIP(r),
		UserAgent: r.UserAgent(),
	}
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && !strings.ContainsAny(id, "\r\n") {
		ev.RequestID = id
	}
	return ev
}
