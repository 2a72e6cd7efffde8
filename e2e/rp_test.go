package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/clientreg"
)

// goRP is a confidential client written with golang.org/x/oauth2, for the
// tests whose subject is the people's pages, not the client library.
type goRP struct {
	s        *server
	cfg      *oauth2.Config
	cb       *callbackCatcher
	verifier string
	state    string
}

func newGoRP(t *testing.T, s *server, name, scope string) *goRP {
	t.Helper()
	cb := newCallbackCatcher(t)
	redirect := cb.srv.URL + "/cb"
	id, sec := s.client(t, clientreg.Metadata{
		ClientName: name, RedirectURIs: []string{redirect}, Scope: scope,
		TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes:              []string{"authorization_code", "refresh_token"},
	})
	return &goRP{s: s, cb: cb, cfg: &oauth2.Config{
		ClientID: id, ClientSecret: sec, RedirectURL: redirect, Scopes: strings.Fields(scope),
		Endpoint: oauth2.Endpoint{AuthURL: s.issuer + "/authorize", TokenURL: s.issuer + "/token", AuthStyle: oauth2.AuthStyleInHeader},
	}}
}

// authURL starts a new authorization request (PKCE S256, aud = FHIR base).
func (r *goRP) authURL() string {
	r.verifier = oauth2.GenerateVerifier()
	r.state = oauth2.GenerateVerifier()[:24]
	return r.cfg.AuthCodeURL(r.state, oauth2.S256ChallengeOption(r.verifier), oauth2.SetAuthURLParam("aud", r.s.fhirBase))
}

// exchange waits for the browser to reach the redirect URI and redeems the code.
func (r *goRP) exchange(t *testing.T, b *browser) *oauth2.Token {
	t.Helper()
	var cb string
	select {
	case cb = <-r.cb.got:
	case <-time.After(pageWait):
		b.fail("the redirect to the client", fmt.Errorf("no callback"))
	}
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("state"); got != r.state {
		t.Fatalf("state %q, want %q (%s)", got, r.state, cb)
	}
	tok, err := r.cfg.Exchange(context.Background(), u.Query().Get("code"), oauth2.VerifierOption(r.verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	return tok
}

// idClaims decodes the id_token's payload (its signature is checked by the
// library tests; here only amr/acr matter).
func idClaims(t *testing.T, tok *oauth2.Token) map[string]any {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// gatewayGet reads path through the gateway with a bearer token.
func gatewayGet(t *testing.T, s *server, token, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.fhirBase+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// totp is an independent RFC 6238 implementation (HMAC-SHA1, 6 digits,
// 30-second steps) standing in for the person's authenticator app.
func totp(t *testing.T, base32Key string, step int64) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(strings.Join(strings.Fields(base32Key), "")))
	if err != nil {
		t.Fatalf("TOTP key %q: %v", base32Key, err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000)
}

func totpStep(now time.Time) int64 { return now.Unix() / 30 }

// routeMounted reports whether the server answers path with anything but 404.
func routeMounted(t *testing.T, s *server, path string) bool {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(s.issuer + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}
