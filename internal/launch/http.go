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
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Pattern is the route the handler serves. It belongs on the admin API
// (internal/adminapi), which authenticates every request before routing;
// never on the public listener.
const Pattern = "POST /admin/launch"

// Options configures the admin launch endpoint.
type Options struct {
	Launches storage.Launches
	// Principal names who the admin API admitted the request as (an admin
	// token or client certificate), e.g. from adminapi.PrincipalFrom; it is
	// the audit event's UserID. A request without one is refused: the
	// handler never serves unauthenticated requests, even when mounted in
	// the wrong place.
	Principal func(*http.Request) (string, bool)
	TTL       time.Duration // DefaultTTL when zero
	Auditor   audit.Auditor
	Logger    *slog.Logger
	Now       func() time.Time
}

// Handler serves POST /admin/launch behind the admin API's authentication.
type Handler struct {
	opts Options
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	if opts.Launches == nil || opts.Principal == nil || opts.Auditor == nil {
		return nil, errors.New("launch: Options.Launches, Principal and Auditor are required")
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

// request is the JSON body of POST /admin/launch.
type request struct {
	Patient           string          `json:"patient"`
	Encounter         string          `json:"encounter"`
	FHIRContext       json.RawMessage `json:"fhirContext"`
	NeedPatientBanner *bool           `json:"need_patient_banner"`
	Intent            string          `json:"intent"`
}

const maxBody = 16 << 10

// ServeHTTP creates a launch from the JSON body and answers
// {"launch", "expires_in"}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	httpx.NoStore(w) // refusals too: nothing here is cacheable
	ev := audit.Event{Time: h.opts.Now(), Action: audit.ActionLaunchCreated, Outcome: audit.Failure,
		SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	refuse := func(status int, err *oauth.Error) {
		ev.Reason = string(err.Code) + ": " + err.Description
		if aerr := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); aerr != nil {
			h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.Any("err", aerr))
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate-admin", error="invalid_token"`)
		}
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
	}
	who, ok := h.opts.Principal(r)
	if !ok || who == "" {
		refuse(http.StatusUnauthorized, oauth.Errorf(oauth.InvalidToken, "an admin token or an admitted client certificate is required"))
		return
	}
	ev.UserID = who
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
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable", err))
		return
	}
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
