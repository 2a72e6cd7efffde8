package grant_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/grant"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest/backends"
)

// session stores a live login session of the fixture's user and returns its hash.
func (f *fixture) session() []byte {
	f.t.Helper()
	h := storage.HashSecret(secret.Token())
	now := f.clock.Now()
	if err := f.store.CreateSession(f.ctx, &storage.Session{Hash: h, UserID: f.user.ID, CSRFToken: "csrf",
		AuthTime: now, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(8 * time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	return h
}

func withRetryWindow(d time.Duration) func(*grant.Options) {
	return func(o *grant.Options) { o.RefreshRetryWindow = d }
}

func TestRefreshRetryWindow(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixtureOn(t, open(t), withRetryWindow(10*time.Second))
		c, s := f.client(oauth.AuthClientSecretBasic)
		start := func() string {
			code, verifier := f.code(c, codeOpts{})
			return wantOK(t, f.exchange(code, verifier, basic(c, s))).str("refresh_token")
		}

		// The client lost the response: presenting the previous token again
		// within the window rotates again, and the lost successor is dead.
		rt1 := start()
		lost := wantOK(t, f.refresh(rt1, "", basic(c, s))).str("refresh_token")
		f.clock.Add(9 * time.Second)
		retried := wantOK(t, f.refresh(rt1, "", basic(c, s)))
		rt3 := retried.str("refresh_token")
		if rt3 == "" || rt3 == lost || retried.str("access_token") == "" {
			t.Fatalf("retry response %v", retried)
		}
		rt4 := wantOK(t, f.refresh(rt3, "", basic(c, s))).str("refresh_token")
		// The lost successor turning up later is reuse: the family is revoked.
		wantError(t, f.refresh(lost, "", basic(c, s)), 400, oauth.InvalidGrant)
		if !f.audit.Has(audit.ActionRefreshReuse, audit.Failure) {
			t.Error("reuse of the invalidated successor not audited")
		}
		wantError(t, f.refresh(rt4, "", basic(c, s)), 400, oauth.InvalidGrant)

		// After the window it is reuse.
		rt1 = start()
		rt2 := wantOK(t, f.refresh(rt1, "", basic(c, s))).str("refresh_token")
		f.clock.Add(10 * time.Second)
		wantError(t, f.refresh(rt1, "", basic(c, s)), 400, oauth.InvalidGrant)
		wantError(t, f.refresh(rt2, "", basic(c, s)), 400, oauth.InvalidGrant)

		// Once the successor was used it is reuse, even within the window.
		rt1 = start()
		rt2 = wantOK(t, f.refresh(rt1, "", basic(c, s))).str("refresh_token")
		rt3 = wantOK(t, f.refresh(rt2, "", basic(c, s))).str("refresh_token")
		wantError(t, f.refresh(rt1, "", basic(c, s)), 400, oauth.InvalidGrant)
		wantError(t, f.refresh(rt3, "", basic(c, s)), 400, oauth.InvalidGrant)

		// Another client cannot use the retry either.
		other, otherSecret := f.client(oauth.AuthClientSecretBasic)
		rt1 = start()
		rt2 = wantOK(t, f.refresh(rt1, "", basic(c, s))).str("refresh_token")
		wantError(t, f.refresh(rt1, "", basic(other, otherSecret)), 400, oauth.InvalidGrant)
		wantOK(t, f.refresh(rt2, "", basic(c, s)))
	})
}

// TestConcurrentRefresh: N refreshes of one token at once never leave two
// valid refresh tokens. With no retry window exactly one succeeds (and the
// others are reuse, which revokes the family); with a window they rotate in
// turn and exactly the last refresh token is valid.
func TestConcurrentRefresh(t *testing.T) {
	const n = 16
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		for _, window := range []time.Duration{0, 10 * time.Second} {
			f := newFixtureOn(t, open(t), withRetryWindow(window))
			c, s := f.client(oauth.AuthClientSecretBasic)
			code, verifier := f.code(c, codeOpts{})
			rt := wantOK(t, f.exchange(code, verifier, basic(c, s))).str("refresh_token")

			codes := make([]int, n)
			tokens := make([]string, n)
			var wg sync.WaitGroup
			startGate := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-startGate
					w := f.refresh(rt, "", basic(c, s))
					codes[i] = w.Code
					if w.Code == http.StatusOK {
						tokens[i] = decode(t, w).str("refresh_token")
					}
				}()
			}
			close(startGate)
			wg.Wait()
			ok := 0
			for _, code := range codes {
				if code == http.StatusOK {
					ok++
				} else if code != http.StatusBadRequest {
					t.Fatalf("window %s: status %d", window, code)
				}
			}
			if window == 0 && ok != 1 {
				t.Fatalf("window 0: %d of %d concurrent refreshes succeeded, want exactly 1", ok, n)
			}
			if window > 0 && ok != n {
				t.Fatalf("window %s: %d of %d concurrent retries succeeded", window, ok, n)
			}
			// Count the unused tokens of a live family without presenting
			// them (presenting a spent one is reuse and ends the family).
			var valid []string
			for _, tok := range append(tokens, rt) {
				if tok == "" {
					continue
				}
				st, err := f.store.GetRefreshToken(f.ctx, storage.RefreshTokenKey(tok))
				if err != nil {
					t.Fatal(err)
				}
				fam, err := f.store.GetFamily(f.ctx, st.FamilyID)
				if err != nil {
					t.Fatal(err)
				}
				if st.UsedAt.IsZero() && fam.RevokedAt.IsZero() {
					valid = append(valid, tok)
				}
			}
			if window == 0 && len(valid) != 0 {
				t.Fatalf("window 0: %d refresh tokens survived concurrent reuse", len(valid))
			}
			if window > 0 {
				if len(valid) != 1 {
					t.Fatalf("window %s: %d valid refresh tokens left, want 1", window, len(valid))
				}
				wantOK(t, f.refresh(valid[0], "", basic(c, s)))
			}
		}
	})
}

func TestOnlineAccessEndsWithSession(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixtureOn(t, open(t))
		c, _ := f.client(oauth.AuthNone)
		sess := f.session()
		code, verifier := f.code(c, codeOpts{scope: "openid fhirUser online_access patient/*.rs", session: sess})
		first := wantOK(t, f.exchange(code, verifier, public(c)))
		rt := wantOK(t, f.refresh(first.str("refresh_token"), "", public(c))).str("refresh_token")

		if err := f.store.DeleteSession(f.ctx, sess); err != nil {
			t.Fatal(err)
		}
		b := wantError(t, f.refresh(rt, "", public(c)), 400, oauth.InvalidGrant)
		if b.str("error_description") == "" {
			t.Error("no description")
		}
		claims, err := f.issuer.ParseAccessToken(first.str("access_token"), fhirBase)
		if err != nil {
			t.Fatal(err)
		}
		fam, err := f.store.GetFamily(f.ctx, claims.FamilyID)
		if err != nil || fam.RevokedAt.IsZero() {
			t.Fatalf("family after the session ended: %+v %v", fam, err)
		}

		// An expired session ends it too.
		sess = f.session()
		code, verifier = f.code(c, codeOpts{scope: "openid online_access", session: sess})
		rt = wantOK(t, f.exchange(code, verifier, public(c))).str("refresh_token")
		f.clock.Add(8 * time.Hour)
		wantError(t, f.refresh(rt, "", public(c)), 400, oauth.InvalidGrant)

		// offline_access is not tied to the session.
		sess = f.session()
		code, verifier = f.code(c, codeOpts{scope: "openid offline_access online_access", session: sess})
		rt = wantOK(t, f.exchange(code, verifier, public(c))).str("refresh_token")
		if err := f.store.DeleteSession(f.ctx, sess); err != nil {
			t.Fatal(err)
		}
		wantOK(t, f.refresh(rt, "", public(c)))
	})
}

func TestOnlineAccessWithoutSessionStoreFailsClosed(t *testing.T) {
	f := newFixture(t, func(o *grant.Options) { o.Sessions = nil })
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{scope: "openid online_access", session: f.session()})
	rt := wantOK(t, f.exchange(code, verifier, public(c))).str("refresh_token")
	wantError(t, f.refresh(rt, "", public(c)), 400, oauth.InvalidGrant)
}

func TestRefreshAbsoluteLifetime(t *testing.T) {
	f := newFixture(t, func(o *grant.Options) { o.RefreshIdle = time.Hour; o.RefreshAbsolute = 3 * time.Hour })
	c, s := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(c, codeOpts{})
	rt := wantOK(t, f.exchange(code, verifier, basic(c, s))).str("refresh_token")
	// Used within the idle timeout, it lives on, but never past the family's end.
	for range 2 {
		f.clock.Add(59 * time.Minute)
		rt = wantOK(t, f.refresh(rt, "", basic(c, s))).str("refresh_token")
	}
	f.clock.Add(59 * time.Minute) // 2h57m: the new token's idle expiry is capped at 3h
	rt = wantOK(t, f.refresh(rt, "", basic(c, s))).str("refresh_token")
	f.clock.Add(3 * time.Minute)
	wantError(t, f.refresh(rt, "", basic(c, s)), 400, oauth.InvalidGrant)
}

// TestRefreshWithOAuth2Library refreshes through golang.org/x/oauth2, as a
// Go client would, over real HTTP.
func TestRefreshWithOAuth2Library(t *testing.T) {
	f := newFixture(t)
	srv := newServer(t, f)
	c, s := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(c, codeOpts{})
	cfg := &oauth2.Config{ClientID: c.ID, ClientSecret: s, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client())
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	first := tok.RefreshToken
	tok.Expiry = time.Now().Add(-time.Minute) // force a refresh
	fresh, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.RefreshToken == "" || fresh.RefreshToken == first || fresh.AccessToken == tok.AccessToken {
		t.Fatalf("not rotated: %+v", fresh)
	}
	if fresh.Extra("patient") != nil {
		t.Errorf("unexpected patient %v", fresh.Extra("patient"))
	}
	// The library refreshing with the old token again: invalid_grant, and
	// the family (so the new token too) is gone.
	_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: first, Expiry: time.Now().Add(-time.Minute)}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != string(oauth.InvalidGrant) {
		t.Fatalf("reuse through x/oauth2: %v", err)
	}
	fresh.Expiry = time.Now().Add(-time.Minute)
	if _, err := cfg.TokenSource(ctx, fresh).Token(); !errors.As(err, &re) || re.ErrorCode != string(oauth.InvalidGrant) {
		t.Fatalf("newest token after reuse: %v", err)
	}
	// A narrower scope through the library's own parameter.
	code, verifier = f.code(c, codeOpts{})
	tok, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	narrowCfg := *cfg
	narrowCfg.Scopes = nil
	v := tok.RefreshToken
	r, err := narrowCfg.TokenSource(ctx, &oauth2.Token{RefreshToken: v, Expiry: time.Now().Add(-time.Minute)}).Token()
	if err != nil || r.Extra("scope") != fullScope {
		t.Fatalf("refresh: %v %v", r.Extra("scope"), err)
	}
}
