package app

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// suspensionEvents counts refused events of actions whose reason mentions
// a suspension.
func suspensionEvents(t *testing.T, a *App, actions ...audit.Action) int {
	t.Helper()
	page, err := a.AuditSink().Query(context.Background(), chain.Filter{Actions: actions, Outcome: audit.Failure, Limit: chain.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range page.Entries {
		if strings.Contains(e.Event.Reason, "suspended") {
			n++
		}
	}
	return n
}

// TestSuspendedUserAndClientRefusedAtTokenAndAuthorize: a user the detector
// suspends is refused at /token (refresh) and at /authorize (their open
// session) with standards-shaped errors, each audited; a suspended client
// is refused at /token; clearing the anomalies restores access.
func TestSuspendedUserAndClientRefusedAtTokenAndAuthorize(t *testing.T) {
	ctx := context.Background()
	g := newGatewayFixture(t, map[string]string{"anomaly.refresh_reuse_action": "suspend", "anomaly.replay_action": "suspend"})
	a := g.srv.app
	b := newBrowser(t, a.URL(), redirectURI)
	tok := g.signIn(t, b)
	amy, err := a.Store().GetUserByUsername(ctx, "amy")
	if err != nil {
		t.Fatal(err)
	}
	det := a.prot.detector
	det.Observe(anomaly.Observation{Kind: anomaly.RefreshReuse, UserID: amy.ID})
	if !det.Check("", amy.ID, "").Suspended() {
		t.Fatal("user not suspended")
	}

	refresh := func() error {
		_, err := g.oc.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		return err
	}
	err = refresh()
	var re *oauth2.RetrieveError
	if !asRetrieve(err, &re) || re.ErrorCode != "invalid_grant" || !strings.Contains(re.ErrorDescription, "suspended") {
		t.Fatalf("suspended user's refresh: %v", err)
	}
	if code := g.gatewayGet(t, tok.AccessToken, "/Patient/pt-001"); code != http.StatusForbidden {
		t.Fatalf("suspended user's access token at the gateway: %d", code)
	}
	verifier := oauth2.GenerateVerifier()
	authURL := g.oc.AuthCodeURL("state-susp-1", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", a.FHIRBase()), oidc.Nonce("nonce-susp-1"))
	p := b.get(authURL)
	if p.location == nil || p.location.Query().Get("error") != "access_denied" || p.location.Query().Get("state") != "state-susp-1" {
		t.Fatalf("suspended user's session at /authorize: %d %v", p.status, p.location)
	}
	if n := suspensionEvents(t, a, audit.ActionTokenRefused); n == 0 {
		t.Fatal("refused refresh not audited")
	}
	if n := suspensionEvents(t, a, audit.ActionAuthorize); n == 0 {
		t.Fatal("refused authorization not audited")
	}

	if _, err := det.ClearSubject(ctx, anomaly.Subject{Kind: anomaly.SubjectUser, ID: amy.ID}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := refresh(); err != nil {
		t.Fatalf("refresh after clearing: %v", err)
	}
	if p := b.get(authURL); p.location != nil && p.location.Query().Get("error") != "" {
		t.Fatalf("authorize after clearing: %v", p.location)
	}

	// A suspended client: refused at /token with unauthorized_client.
	tok = g.signIn(t, newBrowser(t, a.URL(), redirectURI))
	det.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: g.public.ID})
	_, err = g.oc.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if !asRetrieve(err, &re) || re.ErrorCode != "unauthorized_client" {
		t.Fatalf("suspended client's refresh: %v", err)
	}
	if _, err := det.ClearSubject(ctx, anomaly.Subject{Kind: anomaly.SubjectClient, ID: g.public.ID}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.oc.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Fatalf("client's refresh after clearing: %v", err)
	}
}

func asRetrieve(err error, re **oauth2.RetrieveError) bool { return errors.As(err, re) }
