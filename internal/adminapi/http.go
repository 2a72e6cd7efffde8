package adminapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/httpx"
)

// Handler is the admin API: its own mux with authentication on every route.
type Handler struct {
	opts Options
	mux  *http.ServeMux
}

type principalKey struct{}

// PrincipalFrom returns who the admin request in ctx was admitted as.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// New builds the admin API.
func New(opts Options) (*Handler, error) {
	if opts.Tokens == nil && !opts.AllowClientCerts {
		return nil, fmt.Errorf("%w: neither admin tokens nor client certificates are enabled; nobody could use the admin API", ErrOptions)
	}
	if opts.Auditor == nil {
		return nil, fmt.Errorf("%w: Auditor is required", ErrOptions)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{opts: opts, mux: http.NewServeMux()}
	if opts.Metrics != nil {
		h.mux.Handle("GET /metrics", opts.Metrics.Handler())
	}
	if opts.Anomalies != nil {
		h.mux.HandleFunc("GET /admin/anomalies", h.listAnomalies)
		h.mux.HandleFunc("POST /admin/anomalies/{id}/clear", h.clearAnomaly)
		h.mux.HandleFunc("POST /admin/anomalies/clear", h.clearSubject)
	}
	return h, nil
}

// Handle adds an admin route (Go 1.22 pattern); the route gets the same
// authentication as every other.
func (h *Handler) Handle(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

// ServeHTTP authenticates, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	p, err := h.authenticate(r)
	if err != nil {
		h.audit(r, "", audit.Failure, err.Error())
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate-admin", error="invalid_token"`)
		httpx.WriteJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "invalid_token", "error_description": "an admin token or an admitted client certificate is required",
		})
		return
	}
	if r.URL.Path != "/metrics" {
		h.audit(r, p, audit.Success, "")
	}
	h.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
}

var errNoCredentials = errors.New("no admin credentials")

func (h *Handler) authenticate(r *http.Request) (Principal, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, text, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", ErrInvalidToken
		}
		t, err := Authenticate(r.Context(), h.opts.Tokens, strings.TrimSpace(text), h.opts.Now())
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				h.opts.Logger.Error("admin token lookup", "err", err)
			}
			return "", ErrInvalidToken
		}
		return Principal("token:" + t.Name + "/" + t.ID), nil
	}
	if r.TLS != nil {
		if p, ok := h.opts.certPrincipal(r.TLS.VerifiedChains); ok {
			return p, nil
		}
		if len(r.TLS.VerifiedChains) > 0 {
			return "", errors.New("client certificate not admitted")
		}
	}
	return "", errNoCredentials
}

func (h *Handler) audit(r *http.Request, p Principal, o audit.Outcome, reason string) {
	ev := audit.Event{
		Time: h.opts.Now(), Action: ActionAdminAccess, Outcome: o, Reason: reason,
		UserID: string(p), SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent(),
	}
	if reason == "" {
		ev.Reason = r.Method + " " + r.URL.Path
	} else {
		ev.Reason = r.Method + " " + r.URL.Path + ": " + reason
	}
	if err := h.opts.Auditor.Record(context.WithoutCancel(r.Context()), ev); err != nil {
		h.opts.Logger.Error("admin audit", "err", err)
	}
}

func parseSubject(s string) (anomaly.Subject, bool) {
	kind, id, ok := strings.Cut(s, ":")
	sub := anomaly.Subject{Kind: anomaly.SubjectKind(kind), ID: id}
	switch sub.Kind {
	case anomaly.SubjectClient, anomaly.SubjectUser, anomaly.SubjectIP:
		return sub, ok && id != ""
	}
	return sub, false
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	httpx.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// GET /admin/anomalies?all=true&subject=client:app1&limit=100
func (h *Handler) listAnomalies(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := anomaly.ListOptions{IncludeCleared: q.Get("all") == "true" || q.Get("all") == "1"}
	if s := q.Get("subject"); s != "" {
		sub, ok := parseSubject(s)
		if !ok {
			writeError(w, http.StatusBadRequest, "invalid_request", "subject must be client:<id>, user:<id> or ip:<address>")
			return
		}
		opts.Subject = sub
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be 1-10000")
			return
		}
		opts.Limit = n
	}
	as, err := h.opts.Anomalies.List(r.Context(), opts)
	if err != nil {
		h.opts.Logger.Error("list anomalies", "err", err)
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the anomaly store is unavailable")
		return
	}
	if as == nil {
		as = []anomaly.Anomaly{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"anomalies": as})
}

// POST /admin/anomalies/{id}/clear
func (h *Handler) clearAnomaly(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	a, err := h.opts.Anomalies.Clear(r.Context(), r.PathValue("id"), string(p))
	switch {
	case errors.Is(err, anomaly.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such anomaly")
	case err != nil:
		h.opts.Logger.Error("clear anomaly", "err", err)
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the anomaly store is unavailable")
	default:
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"cleared": []anomaly.Anomaly{*a}})
	}
}

// POST /admin/anomalies/clear?subject=user:u1
func (h *Handler) clearSubject(w http.ResponseWriter, r *http.Request) {
	sub, ok := parseSubject(r.URL.Query().Get("subject"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_request", "subject must be client:<id>, user:<id> or ip:<address>")
		return
	}
	p, _ := PrincipalFrom(r.Context())
	as, err := h.opts.Anomalies.ClearSubject(r.Context(), sub, string(p))
	if err != nil {
		h.opts.Logger.Error("clear anomalies", "err", err)
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the anomaly store is unavailable")
		return
	}
	if as == nil {
		as = []anomaly.Anomaly{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"cleared": as})
}
