package authorize

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// RequestURIPrefix starts every request_uri /par hands out (RFC 9126 §2.2);
// the rest is the pushed AuthRequest's unguessable ID.
const RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// errPushedUnusable is the cause when a request_uri is unknown, used,
// expired or belongs to another client.
var errPushedUnusable = errors.New("authorize: request_uri unknown, used, expired or of another client")

// ValidatePushed validates form, the body of a pushed authorization request
// from the already authenticated client, exactly as /authorize validates its
// parameters (RFC 9126 §2.1). It returns the AuthRequest to store (with
// Pushed set; the caller sets ExpiresAt) or an *oauth.Error. A `launch`
// value in form is consumed.
func (h *Handler) ValidatePushed(ctx context.Context, client *storage.Client, form url.Values) (*storage.AuthRequest, error) {
	if form.Get("redirect_uri") == "" {
		// FAPI 2.0 §5.3.1.2: a pushed request always names its redirect URI.
		return nil, oauth.Errorf(oauth.InvalidRequest, "redirect_uri is required in a pushed authorization request")
	}
	q := url.Values{}
	for k, v := range form {
		switch k {
		case "client_secret", "client_assertion", "client_assertion_type":
			continue // client authentication, not part of the authorization request
		}
		q[k] = v
	}
	q.Set("client_id", client.ID)
	v, err := h.validateRequest(ctx, q, true)
	if err != nil {
		var pe *PageError
		var re *RedirectError
		switch {
		case errors.As(err, &re):
			return nil, re.Err
		case errors.As(err, &pe):
			return nil, oauth.Wrap(oauth.InvalidRequest, strings.TrimSuffix(pe.Message, "."), err)
		}
		return nil, oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	ar := v.ar
	ar.Pushed = true
	ar.Prompt = v.prompt
	return ar, nil
}

// pickup resolves /authorize?client_id=...&request_uri=... (RFC 9126 §4):
// the pushed request must exist, belong to client_id, be unexpired and
// unused; it is used up atomically and continues as a fresh request. Every
// other parameter is ignored.
func (h *Handler) pickup(ctx context.Context, q url.Values) (*validated, error) {
	if len(q["client_id"]) > 1 || len(q["request_uri"]) > 1 {
		return nil, &PageError{Message: "The request repeats the client_id or request_uri parameter."}
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return nil, &PageError{Message: "The request does not name a client (client_id is missing)."}
	}
	id, ok := strings.CutPrefix(q.Get("request_uri"), RequestURIPrefix)
	if !ok || id == "" {
		return nil, &PageError{Message: "The request_uri was not issued by this server."}
	}
	client, err := h.opts.Clients.GetClient(ctx, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, &PageError{Message: "The application is not registered with this server.", Cause: err}
	}
	if err != nil {
		return nil, fmt.Errorf("authorize: get client: %w", err)
	}
	if client.Disabled {
		return nil, &PageError{Message: "The application is not registered with this server.", Cause: errors.New("client disabled")}
	}
	now := h.opts.Now()
	var pushed storage.AuthRequest
	_, err = h.opts.AuthRequests.UpdateAuthRequest(ctx, id, func(ar *storage.AuthRequest) error {
		if !ar.Pushed || ar.ClientID != client.ID || !now.Before(ar.ExpiresAt) {
			return errPushedUnusable
		}
		pushed = *ar
		ar.Pushed = false // used up: never accepted as a request_uri again
		ar.ExpiresAt = now
		return nil
	})
	switch {
	case errors.Is(err, errPushedUnusable), errors.Is(err, storage.ErrNotFound):
		return nil, &PageError{Message: "This sign-in request has expired or was already used. Return to the application and start again.",
			Cause: fmt.Errorf("%w: %w", errPushedUnusable, err)}
	case err != nil:
		return nil, fmt.Errorf("authorize: use pushed request: %w", err)
	}
	if err := h.opts.AuthRequests.DeleteAuthRequest(ctx, id); err != nil {
		h.opts.Logger.WarnContext(ctx, "could not delete a used pushed request", "err", err)
	}
	ar := pushed
	ar.ID = secret.Token()
	ar.Pushed = false
	ar.CreatedAt = now
	ar.ExpiresAt = now.Add(AuthRequestTTL)
	return &validated{client: client, ar: &ar, prompt: pushed.Prompt}, nil
}
