// Package authorize implements the browser side of SMART App Launch 2.2:
// the /authorize endpoint (GET and form POST), sign-in, the patient picker,
// the consent page and the issuing of authorization codes that /token
// redeems.
//
// Decisions are plain Go (request.go, redirect.go, grant.go, flow.go); the
// HTTP skin lives in http*.go.
//
// Documented choices:
//   - A client with exactly one registered redirect URI may omit
//     redirect_uri; that URI is then used. With several, it is required.
//   - Redirect URIs match byte for byte, except that a registered
//     http://127.0.0.1 or http://[::1] URI matches any port (RFC 8252 §7.3).
//   - The `launch` scope without a `launch` parameter is treated as a
//     standalone request: `launch` is not granted. A `launch` parameter
//     without the `launch` scope still binds (and uses up) the EHR context,
//     but `launch` is not granted either.
//   - Patient context is established whenever launch/patient or a patient/
//     resource scope is granted: from the EHR launch if it names a patient,
//     else a patient user gets their own record and a clinician or admin
//     picks one. A patient user never gets another patient's context.
//   - prompt=none fails with login_required, consent_required or
//     interaction_required when the flow would need a page; prompt=login
//     ignores an existing session.
package authorize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// Defaults and limits.
const (
	DefaultCodeTTL    = 60 * time.Second
	MaxCodeTTL        = 60 * time.Second
	AuthRequestTTL    = 10 * time.Minute
	maxParamLen       = 4096 // state, nonce and other free-text parameters
	pickerResultLimit = 50
	pickerScanLimit   = 5000 // name matches scanned for a birth date
)

// DefaultRoleScopes bounds what each role may grant (non-resource scopes such
// as openid or offline_access are always allowed by role).
var DefaultRoleScopes = map[storage.Role]string{
	storage.RolePatient:   "patient/*.rs",
	storage.RoleClinician: "patient/*.cruds user/*.cruds",
	storage.RoleAdmin:     "patient/*.cruds user/*.cruds",
}

// nonResource are the scopes every role may grant.
const nonResource = "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access"

// Options configures the authorization endpoint and its pages.
type Options struct {
	Issuer       string   // this server's issuer URL, sent as `iss` (RFC 9207)
	FHIRBases    []string // accepted `aud` values
	Clients      storage.Clients
	AuthRequests storage.AuthRequests
	AuthCodes    storage.AuthCodes
	Launches     storage.Launches
	Consents     storage.Consents
	Users        storage.Users
	Patients     storage.Patients
	Sessions     *session.Manager
	// Authenticator checks passwords with throttling; built from Users when nil.
	Authenticator *session.Authenticator
	RoleScopes    map[storage.Role]string // DefaultRoleScopes when nil
	CodeTTL       time.Duration           // DefaultCodeTTL when zero; at most 60 s
	SecureCookies bool                    // informational; the session Manager owns cookie flags
	// RequirePAR refuses every authorization request not pushed to /par
	// first (RFC 9126 §6); clients can also require it one by one.
	RequirePAR bool
	// MFA says whether a user has a confirmed second factor; nil means no
	// second factor is ever asked for. Users with one, and users of the
	// RequireMFAFor roles, must pass it (session amr "otp") before any step
	// after sign-in; the browser is sent to the mfa pages and comes back to
	// PathContinue.
	MFA           MFAChecker
	RequireMFAFor []storage.Role
	// Suspended, when set, reports whether the suspicious-activity detector
	// has suspended the client or the user (either may be ""): the flow
	// then ends with access_denied until an administrator clears it.
	Suspended func(clientID, userID string) bool
	Auditor   audit.Auditor
	Logger    *slog.Logger
	Now       func() time.Time
}

// MFAChecker reports whether a user has a confirmed second factor (package mfa's Service).
type MFAChecker interface {
	Enrolled(ctx context.Context, userID string) (bool, error)
}

// Handler serves /authorize, the sign-in, picker and consent pages, and /logout.
type Handler struct {
	opts       Options
	bases      []string
	roleScopes map[storage.Role]scope.Set
	pages      *web.Pages
}

// New validates opts, fills defaults and parses the templates.
func New(opts Options) (*Handler, error) {
	var errs []error
	need := func(ok bool, name string) {
		if !ok {
			errs = append(errs, fmt.Errorf("authorize: Options.%s is required", name))
		}
	}
	need(opts.Issuer != "", "Issuer")
	need(len(opts.FHIRBases) > 0, "FHIRBases")
	need(opts.Clients != nil, "Clients")
	need(opts.AuthRequests != nil, "AuthRequests")
	need(opts.AuthCodes != nil, "AuthCodes")
	need(opts.Launches != nil, "Launches")
	need(opts.Consents != nil, "Consents")
	need(opts.Users != nil, "Users")
	need(opts.Patients != nil, "Patients")
	need(opts.Sessions != nil, "Sessions")
	need(opts.Auditor != nil, "Auditor")
	if opts.CodeTTL == 0 {
		opts.CodeTTL = DefaultCodeTTL
	}
	if opts.CodeTTL < 0 || opts.CodeTTL > MaxCodeTTL {
		errs = append(errs, fmt.Errorf("authorize: CodeTTL %v must be positive and at most %v", opts.CodeTTL, MaxCodeTTL))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RoleScopes == nil {
		opts.RoleScopes = DefaultRoleScopes
	}
	h := &Handler{opts: opts, roleScopes: map[storage.Role]scope.Set{}}
	for _, b := range opts.FHIRBases {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("authorize: FHIR base %q is not an absolute http(s) URL", b))
			continue
		}
		h.bases = append(h.bases, strings.TrimRight(b, "/"))
	}
	for role, raw := range opts.RoleScopes {
		set, unknown, err := scope.ParseSet(raw + " " + nonResource)
		if err != nil {
			errs = append(errs, fmt.Errorf("authorize: RoleScopes[%s]: %w", role, err))
			continue
		}
		if len(unknown) > 0 {
			errs = append(errs, fmt.Errorf("authorize: RoleScopes[%s]: unknown scopes %v", role, unknown))
			continue
		}
		h.roleScopes[role] = set
	}
	if opts.Authenticator == nil && opts.Users != nil {
		a, err := session.NewAuthenticator(session.AuthenticatorOptions{Users: opts.Users, Auditor: opts.Auditor,
			Logger: opts.Logger, Now: opts.Now})
		if err != nil {
			errs = append(errs, err)
		}
		h.opts.Authenticator = a
	}
	pages, err := web.Load()
	if err != nil {
		errs = append(errs, err)
	}
	h.pages = pages
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return h, nil
}
