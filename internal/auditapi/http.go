package auditapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/export"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// ErrOptions reports invalid Options.
var ErrOptions = errors.New("auditapi: invalid options")

// Options configure the audit HTTP API.
type Options struct {
	// Store is the audit sink queried; required.
	Store export.Querier
	// AuthorizeAdmin authenticates an administrator for GET /admin/audit and
	// returns an identifier for the audit record of the query; an error
	// refuses the request with 401. Required: there is no unauthenticated mode.
	AuthorizeAdmin func(r *http.Request) (admin string, err error)
	// PatientOf returns the signed-in patient's id for the access report; an
	// error refuses with 401. When nil, GET /patient/access-report is not served.
	PatientOf func(r *http.Request) (patient string, err error)
	// ClientNames names apps in the access report (optional).
	ClientNames ClientNamer
	// Auditor records each query of the trail (audit.ActionAuditQuery); a
	// failure to record refuses the query (fail closed). Required.
	Auditor audit.Auditor
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler serves the audit API.
type Handler struct{ opts Options }

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	switch {
	case opts.Store == nil:
		return nil, fmt.Errorf("%w: Store is required", ErrOptions)
	case opts.AuthorizeAdmin == nil:
		return nil, fmt.Errorf("%w: AuthorizeAdmin is required", ErrOptions)
	case opts.Auditor == nil:
		return nil, fmt.Errorf("%w: Auditor is required", ErrOptions)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{opts: opts}, nil
}

// Paths served.
const (
	AdminPath  = "/admin/audit"
	ReportPath = "/patient/access-report"
)

// Register adds GET /admin/audit and, with PatientOf, GET /patient/access-report.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+AdminPath, h.admin)
	if h.opts.PatientOf != nil {
		mux.HandleFunc("GET "+ReportPath, h.report)
	}
}

// AdminHandler is GET /admin/audit alone, for an admin mux that routes it
// itself (for example adminapi.Handler.Handle).
func (h *Handler) AdminHandler() http.Handler { return http.HandlerFunc(h.admin) }

// ReportHandler is GET /patient/access-report alone (needs PatientOf).
func (h *Handler) ReportHandler() http.Handler { return http.HandlerFunc(h.report) }

// ParseFilter reads a query filter from URL parameters: patient, user,
// client, action (repeated or comma-separated), outcome, since, until
// (RFC 3339 or YYYY-MM-DD), cursor, limit.
func ParseFilter(q url.Values) (chain.Filter, error) {
	f := chain.Filter{
		Patient: strings.TrimPrefix(q.Get("patient"), "Patient/"),
		User:    q.Get("user"),
		Client:  q.Get("client"),
		After:   q.Get("cursor"),
	}
	for _, v := range q["action"] {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				f.Actions = append(f.Actions, audit.Action(a))
			}
		}
	}
	switch o := audit.Outcome(q.Get("outcome")); o {
	case "", audit.Success, audit.Failure:
		f.Outcome = o
	default:
		return f, fmt.Errorf("%w: outcome must be success or failure", ErrInvalid)
	}
	var err error
	if f.Since, err = parseTime(q.Get("since")); err != nil {
		return f, fmt.Errorf("%w: since: %w", ErrInvalid, err)
	}
	if f.Until, err = parseTime(q.Get("until")); err != nil {
		return f, fmt.Errorf("%w: until: %w", ErrInvalid, err)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > chain.MaxLimit {
			return f, fmt.Errorf("%w: limit must be 1-%d", ErrInvalid, chain.MaxLimit)
		}
		f.Limit = n
	}
	if f.After != "" {
		if _, err := chain.DecodeCursor(f.After); err != nil {
			return f, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return f, nil
}

// ParseTime accepts RFC 3339 or a date (YYYY-MM-DD, midnight UTC).
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, errors.New("use RFC 3339 or YYYY-MM-DD")
	}
	return t, nil
}

// page is the JSON answer of GET /admin/audit.
type page struct {
	Events []chain.JSONEntry `json:"events"`
	Next   string            `json:"next,omitempty"`
}

func (h *Handler) admin(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithoutCancel(r.Context())
	httpx.NoStore(w)
	ev := audit.Event{Time: h.opts.Now(), Action: audit.ActionAuditQuery, Outcome: audit.Failure,
		SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent(), RequestID: r.Header.Get("X-Request-Id")}
	admin, err := h.opts.AuthorizeAdmin(r)
	if err != nil {
		ev.Reason = "admin authentication failed"
		h.record(ctx, ev)
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate-admin"`)
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.InvalidToken, "admin authentication required", err))
		return
	}
	ev.UserID = admin
	f, err := ParseFilter(r.URL.Query())
	format := r.URL.Query().Get("format")
	if err == nil && format != "" && format != "json" && format != "fhir" {
		err = fmt.Errorf("%w: format must be json or fhir", ErrInvalid)
	}
	if err != nil {
		ev.Reason = err.Error()
		h.record(ctx, ev)
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.InvalidRequest, err.Error(), err))
		return
	}
	ev.Reason, ev.Patient, ev.Outcome = describe(f), f.Patient, audit.Success
	// Reading the trail is itself audited, before anything is disclosed.
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable", err))
		return
	}
	p, err := h.opts.Store.Query(ctx, f)
	if err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.TemporarilyUnavailable, "audit store unavailable", err))
		return
	}
	if format == "fhir" {
		h.writeBundle(w, r, p)
		return
	}
	out := page{Events: make([]chain.JSONEntry, 0, len(p.Entries)), Next: p.Next}
	for _, e := range p.Entries {
		out.Events = append(out.Events, chain.ToJSON(e))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// writeBundle answers with a FHIR searchset Bundle and a next link.
func (h *Handler) writeBundle(w http.ResponseWriter, r *http.Request, p chain.Page) {
	type entry struct {
		FullURL  string            `json:"fullUrl"`
		Resource export.AuditEvent `json:"resource"`
		Search   map[string]string `json:"search"`
	}
	type link struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Timestamp    string  `json:"timestamp"`
		Link         []link  `json:"link,omitempty"`
		Entry        []entry `json:"entry,omitempty"`
	}{ResourceType: "Bundle", Type: "searchset", Timestamp: h.opts.Now().UTC().Format(time.RFC3339)}
	self := *r.URL
	b.Link = append(b.Link, link{"self", self.RequestURI()})
	if p.Next != "" {
		q := r.URL.Query()
		q.Set("cursor", p.Next)
		next := *r.URL
		next.RawQuery = q.Encode()
		b.Link = append(b.Link, link{"next", next.RequestURI()})
	}
	for _, e := range p.Entries {
		b.Entry = append(b.Entry, entry{"urn:fhirgate:audit:" + export.ResourceID(e), export.ToAuditEvent(e), map[string]string{"mode": "match"}})
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(b)
}

func (h *Handler) report(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithoutCancel(r.Context())
	httpx.NoStore(w)
	patient, err := h.opts.PatientOf(r)
	if err != nil || patient == "" {
		if err == nil {
			err = errors.New("no patient")
		}
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.InvalidToken, "sign in as a patient to see your access report", err))
		return
	}
	f, err := ParseFilter(url.Values{"since": r.URL.Query()["since"], "until": r.URL.Query()["until"],
		"cursor": r.URL.Query()["cursor"], "limit": r.URL.Query()["limit"]})
	if err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.InvalidRequest, err.Error(), err))
		return
	}
	rep, err := AccessReport(ctx, h.opts.Store, patient, ReportQuery{Since: f.Since, Until: f.Until, After: f.After, Limit: f.Limit}, h.opts.ClientNames)
	if err != nil {
		code := oauth.TemporarilyUnavailable
		if errors.Is(err, ErrInvalid) {
			code = oauth.InvalidRequest
		}
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(code, "access report unavailable", err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, rep)
}

func (h *Handler) record(ctx context.Context, ev audit.Event) {
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.Any("err", err))
	}
}

// describe summarises a filter for the audit record of a query.
func describe(f chain.Filter) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("patient", f.Patient)
	add("user", f.User)
	add("client", f.Client)
	if len(f.Actions) > 0 {
		as := make([]string, len(f.Actions))
		for i, a := range f.Actions {
			as[i] = string(a)
		}
		add("action", strings.Join(as, ","))
	}
	add("outcome", string(f.Outcome))
	if !f.Since.IsZero() {
		add("since", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		add("until", f.Until.UTC().Format(time.RFC3339))
	}
	return "audit query " + strings.Join(parts, " ")
}
