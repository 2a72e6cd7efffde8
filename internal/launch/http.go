package launch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Options configures the admin launch endpoint.
type Options struct {
	Launches storage.Launches
	// Authenticator checks the admin's HTTP Basic credentials with the same
	// throttling as the login page.
	Authenticator *session.Authenticator
	TTL           time.Duration // DefaultTTL when zero
	Auditor       audit.Auditor
	Logger        *slog.Logger
	Now           func() time.Time
}

// Handler serves POST /admin/launch.
type Handler struct {
	opts Options
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	if opts.Launches == nil || opts.Authenticator == nil || opts.Auditor == nil {
		return nil, errors.New("launch: Options.Launches, Authenticator and Auditor are required")
	}
	if opts.TTL > DefaultTTL {
		return nil, errors.New("launch: TTL exceeds 5 minutes")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{opts: opts}, nil
}

// Register adds the endpoint to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/launch", h.create)
}

// request is the JSON body of POST /admin/launch.
type request struct {
	Patient           string          `json:"patient"`
	Encounter         string          `json:"encounter"`
	FHIRContext       json.RawMessage `json:"fhirContext"`
	NeedPatientBanner *bool           `json:"need_patient_banner"`
	Intent            string          `json:"intent"`
}

const maxBody = 16 << 10

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ev := audit.Event{Time: h.opts.Now(), Action: audit.ActionLaunchCreated, Outcome: audit.Failure,
		SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	refuse := func(status int, err *oauth.Error) {
		ev.Reason = string(err.Code) + ": " + err.Description
		if aerr := h.opts.Auditor.Record(ctx, ev); aerr != nil {
			h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.Any("err", aerr))
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="fhirgate", charset="UTF-8"`)
		}
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		refuse(401, oauth.Errorf(oauth.InvalidClient, "HTTP Basic authentication as an admin user is required"))
		return
	}
	u, err := h.opts.Authenticator.Authenticate(ctx, session.Attempt{Username: user, Password: pass,
		SourceIP: ev.SourceIP, UserAgent: ev.UserAgent})
	if err != nil {
		if msg := session.Message(err); msg != "" {
			refuse(401, oauth.Errorf(oauth.InvalidClient, "%s", msg))
			return
		}
		refuse(503, oauth.Wrap(oauth.TemporarilyUnavailable, "authentication unavailable", err))
		return
	}
	ev.UserID, ev.FHIRUser = u.ID, u.FHIRUser
	if u.Role != storage.RoleAdmin {
		refuse(403, oauth.Errorf(oauth.AccessDenied, "only admin users may create launches"))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		refuse(400, oauth.Errorf(oauth.InvalidRequest, "Content-Type must be application/json"))
		return
	}
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		refuse(400, oauth.Wrap(oauth.InvalidRequest, "body must be a JSON object with patient and optional encounter", err))
		return
	}
	lc := storage.LaunchContext{Patient: req.Patient, Encounter: req.Encounter, NeedPatientBanner: true, Intent: req.Intent}
	if req.NeedPatientBanner != nil {
		lc.NeedPatientBanner = *req.NeedPatientBanner
	}
	if len(req.FHIRContext) > 0 && string(req.FHIRContext) != "null" {
		lc.FHIRContext = []byte(req.FHIRContext)
	}
	norm, err := Normalize(lc)
	if err != nil {
		refuse(400, oauth.Wrap(oauth.InvalidRequest, "patient must be Patient/<id> and encounter Encounter/<id>", err))
		return
	}
	ev.Patient = norm.Patient
	value, err := Create(context.WithoutCancel(ctx), h.opts.Launches, norm, h.opts.Now(), h.opts.TTL)
	if err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.ServerError, "could not store the launch", err))
		return
	}
	// Fail closed: a launch the audit trail does not know about is never handed out.
	ev.Outcome = audit.Success
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable", err))
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"launch": value, "expires_in": int(h.ttl().Seconds())})
}

func (h *Handler) ttl() time.Duration {
	if h.opts.TTL <= 0 {
		return DefaultTTL
	}
	return h.opts.TTL
}

func isJSON(ct string) bool {
	return len(ct) >= 16 && ct[:16] == "application/json"
}
