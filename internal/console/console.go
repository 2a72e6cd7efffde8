// Package console is the administrators' web console: clients (create,
// edit, disable, rotate secret), users (create, lock, unlock, reset the
// second factor), audit search, anomalies (list, clear) and signing keys.
// Every page needs a signed-in administrator whose session passed a second
// factor (amr "otp"), whatever login.require_mfa_for says; every change is
// a CSRF-checked POST and is audited.
package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/export"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// MFA is what the console needs of package mfa's Service.
type MFA interface {
	Enrolled(ctx context.Context, userID string) (bool, error)
	Reset(ctx context.Context, userID, by string) error
}

// KeyManager is what the console needs of package keys' Manager.
type KeyManager interface {
	Keys() []storage.SigningKey
	Rotate(ctx context.Context) ([]string, error)
}

// UserSessionEnder deletes every session of a user (storage.Sessions).
type UserSessionEnder interface {
	DeleteUserSessions(ctx context.Context, userID string) error
}

// FamilyRevoker revokes every token family of a client or of a user
// (storage.Tokens).
type FamilyRevoker interface {
	RevokeClientFamilies(ctx context.Context, clientID string, now time.Time, reason string) error
	RevokeUserFamilies(ctx context.Context, userID string, now time.Time, reason string) error
}

// Options configures the console.
type Options struct {
	Sessions *session.Manager
	Users    storage.Users
	Clients  storage.Clients
	MFA      MFA // required: administrators must use a second factor
	// UserSessions ends every session of a user the console locks (required).
	UserSessions UserSessionEnder
	// Families revokes every token family of a client the console disables,
	// so the gateway refuses its tokens within the revocation bound (required).
	Families FamilyRevoker
	// Optional sections: without them the page says the feature is off.
	Audit     export.Querier
	Anomalies anomaly.Store
	Keys      KeyManager
	// PasswordParams hash new users' passwords (password.Default when zero).
	PasswordParams password.Params
	Auditor        audit.Auditor
	Logger         *slog.Logger
	Now            func() time.Time
}

// Handler serves the console.
type Handler struct {
	opts  Options
	pages *web.Pages
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	var errs []error
	need := func(ok bool, name string) {
		if !ok {
			errs = append(errs, fmt.Errorf("console: Options.%s is required", name))
		}
	}
	need(opts.Sessions != nil, "Sessions")
	need(opts.Users != nil, "Users")
	need(opts.Clients != nil, "Clients")
	need(opts.MFA != nil, "MFA")
	need(opts.UserSessions != nil, "UserSessions")
	need(opts.Families != nil, "Families")
	need(opts.Auditor != nil, "Auditor")
	if opts.PasswordParams == (password.Params{}) {
		opts.PasswordParams = password.Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pages, err := web.Load()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Handler{opts: opts, pages: pages}, nil
}

// ErrInvalid marks refused console input; its text is shown to the admin.
var ErrInvalid = errors.New("invalid input")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Message is the admin-facing text of a refused input.
func Message(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}

// ClientForm is the client create/edit form.
type ClientForm struct {
	Name         string
	Confidential bool
	RedirectURIs string // one per line
	Scope        string
	LogoURI      string
}

// parse validates f.
func (f ClientForm) parse() (name string, uris []string, sc string, logo string, err error) {
	name = strings.TrimSpace(f.Name)
	if name == "" || len(name) > 200 {
		return "", nil, "", "", invalid("the name must be 1-200 characters")
	}
	for _, line := range strings.Split(f.RedirectURIs, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		u, perr := url.Parse(line)
		switch {
		case perr != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.User != nil:
			return "", nil, "", "", invalid("redirect URI %q must be an absolute URL without a fragment", line)
		case u.Scheme == "http" && !httpx.IsLoopbackHost(u.Hostname()):
			return "", nil, "", "", invalid("redirect URI %q: plain http only on a loopback address", line)
		case u.Scheme != "http" && u.Scheme != "https":
			return "", nil, "", "", invalid("redirect URI %q must be https", line)
		}
		uris = append(uris, line)
	}
	if len(uris) == 0 || len(uris) > 20 {
		return "", nil, "", "", invalid("give 1-20 redirect URIs")
	}
	set, unknown, perr := scope.ParseSet(strings.TrimSpace(f.Scope))
	if perr != nil || len(unknown) > 0 || len(set) == 0 {
		return "", nil, "", "", invalid("scopes must be known SMART or OpenID scopes")
	}
	logo = strings.TrimSpace(f.LogoURI)
	if logo != "" && web.SafeLogoURL(logo) == "" {
		return "", nil, "", "", invalid("the logo URL must be https")
	}
	return name, uris, set.String(), logo, nil
}

// CreateClient stores a new client from f; for a confidential client it
// returns the secret (shown once; only its hash is kept).
func (h *Handler) CreateClient(ctx context.Context, f ClientForm) (*storage.Client, string, error) {
	name, uris, sc, logo, err := f.parse()
	if err != nil {
		return nil, "", err
	}
	now := h.opts.Now()
	c := &storage.Client{ID: secret.ID(), Name: name, AuthMethod: string(oauth.AuthNone), RedirectURIs: uris, Scope: sc,
		LogoURI: logo, GrantTypes: []string{string(oauth.GrantAuthorizationCode), string(oauth.GrantRefreshToken)},
		CreatedAt: now, UpdatedAt: now}
	var plain string
	if f.Confidential {
		plain = secret.Token()
		c.AuthMethod, c.SecretHash = string(oauth.AuthClientSecretBasic), storage.HashSecret(plain)
	}
	if err := h.opts.Clients.CreateClient(ctx, c); err != nil {
		return nil, "", fmt.Errorf("console: create client: %w", err)
	}
	return c, plain, nil
}

// UpdateClient applies f (not the client type) to client id.
func (h *Handler) UpdateClient(ctx context.Context, id string, f ClientForm) (*storage.Client, error) {
	name, uris, sc, logo, err := f.parse()
	if err != nil {
		return nil, err
	}
	return h.opts.Clients.UpdateClient(ctx, id, func(c *storage.Client) error {
		c.Name, c.RedirectURIs, c.Scope, c.LogoURI, c.UpdatedAt = name, uris, sc, logo, h.opts.Now()
		return nil
	})
}

// RotateSecret gives a secret-authenticated client a new secret (returned
// once); the old one stops working at once.
func (h *Handler) RotateSecret(ctx context.Context, id string) (string, error) {
	plain := secret.Token()
	_, err := h.opts.Clients.UpdateClient(ctx, id, func(c *storage.Client) error {
		if !oauth.AuthMethod(c.AuthMethod).UsesSecret() {
			return invalid("this client does not authenticate with a secret")
		}
		c.SecretHash, c.UpdatedAt = storage.HashSecret(plain), h.opts.Now()
		return nil
	})
	if err != nil {
		return "", err
	}
	return plain, nil
}

// SetDisabled disables or enables client id.
func (h *Handler) SetDisabled(ctx context.Context, id string, disabled bool) error {
	_, err := h.opts.Clients.UpdateClient(ctx, id, func(c *storage.Client) error {
		c.Disabled, c.UpdatedAt = disabled, h.opts.Now()
		return nil
	})
	if err != nil || !disabled {
		return err
	}
	// Its refresh tokens stop at once, its access tokens at the gateway
	// within the revocation bound.
	if err := h.opts.Families.RevokeClientFamilies(ctx, id, h.opts.Now(), "client disabled"); err != nil {
		return fmt.Errorf("revoke the client's tokens: %w", err)
	}
	return nil
}

var (
	fhirUserRe = regexp.MustCompile(`^(Patient|Practitioner|PractitionerRole|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$`)
)

// NewUser is the user create form.
type NewUser struct {
	Username string
	Password string
	Role     storage.Role
	FHIRUser string
}

// CreateUser validates u, hashes the password and stores the account.
func (h *Handler) CreateUser(ctx context.Context, u NewUser) (*storage.User, error) {
	u.Username, u.FHIRUser = strings.TrimSpace(u.Username), strings.TrimSpace(u.FHIRUser)
	switch {
	case u.Username == "" || len(u.Username) > 200 || strings.ContainsAny(u.Username, " \t\r\n"):
		return nil, invalid("the username must be 1-200 characters without spaces")
	case !u.Role.Valid():
		return nil, invalid("choose a role")
	case len(u.Password) < password.MinLength:
		return nil, invalid("the password must be at least %d characters", password.MinLength)
	case u.FHIRUser != "" && !fhirUserRe.MatchString(u.FHIRUser):
		return nil, invalid("the FHIR user must be a reference like Patient/123 or Practitioner/9")
	case u.Role == storage.RolePatient && !strings.HasPrefix(u.FHIRUser, "Patient/"):
		return nil, invalid("a patient needs a FHIR user Patient/<id>")
	}
	hash, err := password.Hash(u.Password, h.opts.PasswordParams)
	if err != nil {
		return nil, fmt.Errorf("console: hash password: %w", err)
	}
	rec := &storage.User{ID: secret.ID(), Username: u.Username, PasswordHash: hash, Role: u.Role, FHIRUser: u.FHIRUser, CreatedAt: h.opts.Now()}
	if err := h.opts.Users.CreateUser(ctx, rec); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, invalid("that username is taken")
		}
		return nil, fmt.Errorf("console: create user: %w", err)
	}
	return rec, nil
}

// lockFor is how long an administrator's lock lasts (until unlocked).
const lockFor = 100 * 365 * 24 * time.Hour

// Lock locks user id until an administrator unlocks it.
func (h *Handler) Lock(ctx context.Context, id string) error {
	if _, err := h.opts.Users.RecordLoginFailure(ctx, id, h.opts.Now(), 1, lockFor); err != nil {
		return err
	}
	// A locked account keeps no session (no more SSO into app launches) and
	// no app access: its token families are revoked, so refresh tokens fail
	// at once and access tokens at the gateway within the revocation bound.
	if err := h.opts.UserSessions.DeleteUserSessions(ctx, id); err != nil {
		return fmt.Errorf("end the user's sessions: %w", err)
	}
	if err := h.opts.Families.RevokeUserFamilies(ctx, id, h.opts.Now(), "account locked"); err != nil {
		return fmt.Errorf("revoke the user's tokens: %w", err)
	}
	return nil
}

// Unlock clears user id's lock and failure count.
func (h *Handler) Unlock(ctx context.Context, id string) error {
	if _, err := h.opts.Users.GetUser(ctx, id); err != nil {
		return err
	}
	return h.opts.Users.RecordLoginSuccess(ctx, id)
}
