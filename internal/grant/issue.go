package grant

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// defaultIDTokenAlg is the OpenID Connect default id_token algorithm.
const defaultIDTokenAlg = "RS256"

// grantInfo is what a token response is minted from.
type grantInfo struct {
	client   *storage.Client
	user     *storage.User
	scope    string    // the granted scope string, exactly as it is returned
	granted  scope.Set // the same, parsed
	context  storage.LaunchContext
	familyID string
	// id_token inputs; idToken says whether to mint one.
	idToken  bool
	nonce    string
	authTime time.Time
	amr      string // space-separated RFC 8176 methods of the login session
	acr      string
}

// fhirUserURL returns the absolute URL of the user's FHIR resource, or "".
func (h *Handler) fhirUserURL(u *storage.User) string {
	if u.FHIRUser == "" {
		return ""
	}
	return h.fhirBase + "/" + strings.TrimLeft(u.FHIRUser, "/")
}

// mint signs the access token (and id_token when asked) and builds the
// response; ev receives the audit identifiers.
func (h *Handler) mint(ctx context.Context, g grantInfo, ev *audit.Event) (*Response, error) {
	fhirUser := ""
	if g.granted.Has(scope.FHIRUser) {
		fhirUser = h.fhirUserURL(g.user)
	}
	bnd := bindingFrom(ctx)
	raw, claims, err := h.opts.Issuer.AccessToken(token.AccessClaims{
		Subject:   g.user.ID,
		Audience:  h.fhirBase,
		ClientID:  g.client.ID,
		Scope:     g.scope,
		Patient:   g.context.Patient,
		Encounter: g.context.Encounter,
		FHIRUser:  fhirUser,
		FamilyID:  g.familyID,
		Cnf:       bnd.cnf(),
	})
	if err != nil {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	ev.UserID = g.user.ID
	ev.FHIRUser = g.user.FHIRUser
	ev.Patient = g.context.Patient
	ev.Scope = g.scope
	ev.TokenID = claims.JTI

	resp := &Response{
		AccessToken: raw,
		TokenType:   bnd.tokenType(),
		ExpiresIn:   claims.ExpiresAt - claims.IssuedAt,
		Scope:       g.scope,
	}
	if resp.ExpiresIn <= 0 {
		resp.ExpiresIn = int64(h.opts.Issuer.AccessTokenTTL() / time.Second)
	}
	if g.idToken && g.granted.Has(scope.OpenID) {
		alg := g.client.IDTokenSignedResponseAlg
		if alg == "" {
			alg = defaultIDTokenAlg
		}
		extra := map[string]any{}
		if g.granted.Has(scope.Profile) {
			extra["name"], extra["preferred_username"] = g.user.Username, g.user.Username
		}
		if amr := strings.Fields(g.amr); len(amr) > 0 {
			extra["amr"] = amr // OpenID Connect Core §2, RFC 8176
		}
		if g.acr != "" {
			extra["acr"] = g.acr
		}
		resp.IDToken, err = h.opts.Issuer.IDToken(token.IDTokenInput{
			Subject:     g.user.ID,
			ClientID:    g.client.ID,
			Nonce:       g.nonce,
			FHIRUser:    fhirUser,
			AccessToken: raw,
			Alg:         alg,
			AuthTime:    g.authTime,
			Extra:       extra,
		})
		if err != nil {
			return nil, oauth.Wrap(oauth.ServerError, "internal error", err)
		}
	}
	h.addContext(ctx, resp, g.context)
	return resp, nil
}

// addContext copies the SMART launch context into the response. A patient
// context brings need_patient_banner and smart_style_url with it.
func (h *Handler) addContext(ctx context.Context, resp *Response, lc storage.LaunchContext) {
	resp.Patient = lc.Patient
	resp.Encounter = lc.Encounter
	resp.Intent = lc.Intent
	if len(lc.FHIRContext) > 0 {
		var items []any
		if err := json.Unmarshal(lc.FHIRContext, &items); err != nil {
			h.opts.Logger.WarnContext(ctx, "stored fhirContext is not a JSON array; omitted", "error", err)
		} else {
			for _, it := range items {
				if _, ok := it.(map[string]any); !ok {
					h.opts.Logger.WarnContext(ctx, "stored fhirContext holds a non-object; omitted")
					items = nil
					break
				}
			}
			resp.FHIRContext = items
		}
	}
	if lc.Patient != "" {
		banner := lc.NeedPatientBanner
		resp.NeedPatientBanner = &banner
		resp.SmartStyleURL = h.styleURL
	}
}

// refreshExpiry is the end of a new refresh token's life: the idle lifetime,
// never past the family's end.
func (h *Handler) refreshExpiry(now, familyEnd time.Time) time.Time {
	exp := now.Add(h.opts.RefreshIdle)
	if !familyEnd.IsZero() && familyEnd.Before(exp) {
		return familyEnd
	}
	return exp
}

// wantsRefresh reports whether the grant yields a refresh token.
func wantsRefresh(c *storage.Client, granted scope.Set) bool {
	return (granted.Has(scope.OfflineAccess) || granted.Has(scope.OnlineAccess)) &&
		allowsGrant(c, oauth.GrantRefreshToken)
}
