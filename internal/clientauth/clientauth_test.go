package clientauth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func add(t *testing.T, st *sqlite.Store, id string, m oauth.AuthMethod, sec string, disabled bool) {
	t.Helper()
	c := &storage.Client{ID: id, Name: id, AuthMethod: string(m), RedirectURIs: []string{"https://a.example/cb"}, Disabled: disabled}
	if sec != "" {
		c.SecretHash = storage.HashSecret(sec)
	}
	if err := st.CreateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func TestAuthenticate(t *testing.T) {
	st := newStore(t)
	add(t, st, "pub", oauth.AuthNone, "", false)
	add(t, st, "basic", oauth.AuthClientSecretBasic, "s3cret-basic", false)
	add(t, st, "post", oauth.AuthClientSecretPost, "s3cret-post", false)
	add(t, st, "off", oauth.AuthClientSecretBasic, "s3cret-off", true)
	add(t, st, "jwt", oauth.AuthPrivateKeyJWT, "", false)
	add(t, st, "mtls", oauth.AuthTLSClientAuth, "", false)
	add(t, st, "nohash", oauth.AuthClientSecretPost, "", false)
	a := clientauth.Authenticator{Clients: st}

	cases := []struct {
		name  string
		creds clientauth.Credentials
		code  oauth.ErrorCode // "" for success
		cause error
	}{
		{"public", clientauth.Credentials{FormID: "pub"}, "", nil},
		{"basic", clientauth.Credentials{HasBasic: true, BasicID: "basic", BasicSecret: "s3cret-basic"}, "", nil},
		{"basic with same body id", clientauth.Credentials{HasBasic: true, BasicID: "basic", BasicSecret: "s3cret-basic", FormID: "basic"}, "", nil},
		{"post", clientauth.Credentials{FormID: "post", FormSecret: "s3cret-post", HasFormSecret: true}, "", nil},
		{"nothing", clientauth.Credentials{}, oauth.InvalidClient, clientauth.ErrNoCredentials},
		{"two methods", clientauth.Credentials{HasBasic: true, BasicID: "basic", BasicSecret: "s3cret-basic", FormSecret: "s3cret-basic", HasFormSecret: true}, oauth.InvalidRequest, clientauth.ErrMultipleMethods},
		{"basic and assertion", clientauth.Credentials{HasBasic: true, BasicID: "basic", BasicSecret: "s3cret-basic", HasAssertion: true}, oauth.InvalidRequest, clientauth.ErrMultipleMethods},
		{"id mismatch", clientauth.Credentials{HasBasic: true, BasicID: "basic", BasicSecret: "s3cret-basic", FormID: "post"}, oauth.InvalidRequest, clientauth.ErrClientIDMismatch},
		{"unknown", clientauth.Credentials{FormID: "nobody"}, oauth.InvalidClient, clientauth.ErrUnknownClient},
		{"empty basic id", clientauth.Credentials{HasBasic: true, BasicSecret: "x"}, oauth.InvalidClient, clientauth.ErrUnknownClient},
		{"disabled", clientauth.Credentials{HasBasic: true, BasicID: "off", BasicSecret: "s3cret-off"}, oauth.InvalidClient, clientauth.ErrDisabledClient},
		{"wrong secret", clientauth.Credentials{HasBasic: true, BasicID: "basic", BasicSecret: "s3cret-basiC"}, oauth.InvalidClient, clientauth.ErrWrongSecret},
		{"empty secret", clientauth.Credentials{FormID: "post", HasFormSecret: true}, oauth.InvalidClient, clientauth.ErrWrongSecret},
		{"no stored hash", clientauth.Credentials{FormID: "nohash", FormSecret: "", HasFormSecret: true}, oauth.InvalidClient, clientauth.ErrWrongSecret},
		{"secret as public", clientauth.Credentials{FormID: "basic"}, oauth.InvalidClient, clientauth.ErrMethodMismatch},
		{"basic via post", clientauth.Credentials{FormID: "basic", FormSecret: "s3cret-basic", HasFormSecret: true}, oauth.InvalidClient, clientauth.ErrMethodMismatch},
		{"post via basic", clientauth.Credentials{HasBasic: true, BasicID: "post", BasicSecret: "s3cret-post"}, oauth.InvalidClient, clientauth.ErrMethodMismatch},
		{"public with secret", clientauth.Credentials{FormID: "pub", FormSecret: "", HasFormSecret: true}, oauth.InvalidClient, clientauth.ErrMethodMismatch},
		{"public with assertion", clientauth.Credentials{FormID: "pub", HasAssertion: true}, oauth.InvalidClient, clientauth.ErrMethodMismatch},
		{"private_key_jwt client", clientauth.Credentials{FormID: "jwt", HasAssertion: true}, oauth.InvalidClient, clientauth.ErrMalformedAssertion},
		{"tls client", clientauth.Credentials{FormID: "mtls"}, oauth.InvalidClient, clientauth.ErrNotConfigured},
	}
	descs := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Authenticate(context.Background(), tc.creds)
			if tc.code == "" {
				if err != nil || c == nil || c.ID != tc.creds.ClientID() {
					t.Fatalf("client %+v, err %v", c, err)
				}
				return
			}
			var oe *oauth.Error
			if !errors.As(err, &oe) || oe.Code != tc.code || !errors.Is(err, tc.cause) || c != nil {
				t.Fatalf("err %v, want %s wrapping %v", err, tc.code, tc.cause)
			}
			if strings.Contains(oe.Description, "s3cret") || strings.Contains(err.Error(), "s3cret") {
				t.Fatal("secret in error text")
			}
			switch {
			case errors.Is(err, clientauth.ErrUnknownClient), errors.Is(err, clientauth.ErrDisabledClient),
				errors.Is(err, clientauth.ErrWrongSecret), errors.Is(err, clientauth.ErrMethodMismatch):
				descs[oe.Description] = true
			}
		})
	}
	if len(descs) != 1 {
		t.Errorf("failed authentications are distinguishable by description: %v", descs)
	}
}

func TestFromRequest(t *testing.T) {
	req := func(body string, authz ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, v := range authz {
			r.Header.Add("Authorization", v)
		}
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	b64 := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

	// RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
	id, sec := "my app:1", "p@ss:w+rd%"
	c, err := clientauth.FromRequest(req("", b64(url.QueryEscape(id)+":"+url.QueryEscape(sec))), mtls.TrustedProxies{})
	if err != nil || !c.HasBasic || c.BasicID != id || c.BasicSecret != sec {
		t.Fatalf("%+v %v", c, err)
	}
	// Scheme is case-insensitive.
	if c, err := clientauth.FromRequest(req("", strings.Replace(b64("a:b"), "Basic", "basic", 1)), mtls.TrustedProxies{}); err != nil || c.BasicID != "a" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = clientauth.FromRequest(req("client_id=x&client_secret="), mtls.TrustedProxies{})
	if err != nil || c.FormID != "x" || !c.HasFormSecret || c.FormSecret != "" || c.HasBasic {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = clientauth.FromRequest(req("client_id=x&client_assertion_type=y"), mtls.TrustedProxies{})
	if err != nil || !c.HasAssertion {
		t.Fatalf("%+v %v", c, err)
	}

	bad := []struct {
		r    *http.Request
		code oauth.ErrorCode
	}{
		{req("client_id=a&client_id=b"), oauth.InvalidRequest},
		{req("client_secret=a&client_secret=b"), oauth.InvalidRequest},
		{req("", b64("a:b"), b64("a:b")), oauth.InvalidRequest},
		{req("", "Basic !!!"), oauth.InvalidClient},
		{req("", b64("nocolon")), oauth.InvalidClient},
		{req("", b64("a%zz:b")), oauth.InvalidClient},
		{req("", b64("a:b%zz")), oauth.InvalidClient},
		{req("", "Bearer tok"), oauth.InvalidClient},
	}
	for i, tc := range bad {
		_, err := clientauth.FromRequest(tc.r, mtls.TrustedProxies{})
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Code != tc.code {
			t.Errorf("case %d: %v, want %s", i, err, tc.code)
		}
	}
}
