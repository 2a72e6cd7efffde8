package grant_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/cors"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func TestClientAuthentication(t *testing.T) {
	f := newFixture(t)
	pub, _ := f.client(oauth.AuthNone)
	cb, sb := f.client(oauth.AuthClientSecretBasic)
	cp, sp := f.client(oauth.AuthClientSecretPost)
	dis, sd := f.client(oauth.AuthClientSecretBasic, func(c *storage.Client) { c.Disabled = true })
	jwt, _ := f.client(oauth.AuthPrivateKeyJWT)

	cases := []struct {
		name   string
		client *storage.Client // owner of the code
		a      auth
		status int
		code   oauth.ErrorCode
		desc   string
	}{
		{"public sends a secret", pub, post(pub, "x"), 401, oauth.InvalidClient, "client authentication failed"},
		{"public uses basic", pub, basic(pub, ""), 401, oauth.InvalidClient, "client authentication failed"},
		{"basic client wrong secret", cb, basic(cb, sb+"x"), 401, oauth.InvalidClient, "client authentication failed"},
		{"basic client uses post", cb, post(cb, sb), 401, oauth.InvalidClient, "client authentication failed"},
		{"basic client as public", cb, public(cb), 401, oauth.InvalidClient, "client authentication failed"},
		{"post client wrong secret", cp, post(cp, sp[:len(sp)-1]), 401, oauth.InvalidClient, "client authentication failed"},
		{"post client empty secret", cp, post(cp, ""), 401, oauth.InvalidClient, "client authentication failed"},
		{"post client uses basic", cp, basic(cp, sp), 401, oauth.InvalidClient, "client authentication failed"},
		{"post client as public", cp, public(cp), 401, oauth.InvalidClient, "client authentication failed"},
		{"unknown client in body", pub, public(&storage.Client{ID: "BAD_CLIENT_ID"}), 401, oauth.InvalidClient, "client authentication failed"},
		{"unknown client in basic", cb, basic(&storage.Client{ID: "BAD_CLIENT_ID"}, sb), 401, oauth.InvalidClient, "client authentication failed"},
		{"disabled client", dis, basic(dis, sd), 401, oauth.InvalidClient, "client authentication failed"},
		{"private_key_jwt client as public", jwt, public(jwt), 401, oauth.InvalidClient, "client authentication failed"},
		{"no credentials", pub, auth{}, 401, oauth.InvalidClient, "client authentication required"},
		{"basic and body secret", cb, auth{basicID: cb.ID, basicSecret: sb, formSecret: sb, sendFormSecret: true}, 400, oauth.InvalidRequest, ""},
		{"basic and other body client_id", cb, auth{basicID: cb.ID, basicSecret: sb, formID: cp.ID}, 400, oauth.InvalidRequest, ""},
		{"malformed basic", cb, auth{rawBasic: "Basic %%%"}, 401, oauth.InvalidClient, ""},
		{"basic without colon", cb, auth{rawBasic: "Basic " + base64.StdEncoding.EncodeToString([]byte(cb.ID))}, 401, oauth.InvalidClient, ""},
		{"bearer instead of basic", cb, auth{rawBasic: "Bearer abc"}, 401, oauth.InvalidClient, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, verifier := f.code(tc.client, codeOpts{})
			w := f.exchange(code, verifier, tc.a)
			b := wantError(t, w, tc.status, tc.code)
			if tc.desc != "" && b.str("error_description") != tc.desc {
				t.Errorf("description %q, want %q", b.str("error_description"), tc.desc)
			}
			if tc.a.basicID != "" && tc.status == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Basic") {
				t.Errorf("no Basic challenge: %v", w.Header())
			}
			// The refused request left the code unused: its owner can still redeem it.
			owner := public(tc.client)
			switch tc.client {
			case cb:
				owner = basic(cb, sb)
			case cp:
				owner = post(cp, sp)
			case dis, jwt:
				return
			}
			wantOK(t, f.exchange(code, verifier, owner))
		})
	}
	// An assertion (private_key_jwt) is refused for a secret client.
	form := url.Values{"grant_type": {"authorization_code"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {"e30.e30.sig"}}
	wantError(t, f.do(tokenRequest(form, auth{formID: cb.ID})), 401, oauth.InvalidClient)
}

func TestHTTPShape(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)

	t.Run("GET is 405", func(t *testing.T) {
		w := f.do(httptest.NewRequest(http.MethodGet, "/token?grant_type=authorization_code", nil))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
		checkNoStore(t, w)
	})
	t.Run("JSON body", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(`{"grant_type":"authorization_code"}`))
		r.Header.Set("Content-Type", "application/json")
		wantError(t, f.do(r), 400, oauth.InvalidRequest)
	})
	t.Run("repeated parameter", func(t *testing.T) {
		code, verifier := f.code(c, codeOpts{})
		body := exchangeForm(code, verifier).Encode() + "&client_id=" + url.QueryEscape(c.ID) + "&code=" + code
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		wantError(t, f.do(r), 400, oauth.InvalidRequest)
		// and the code still works
		wantOK(t, f.exchange(code, verifier, public(c)))
	})
	t.Run("repeated client_id", func(t *testing.T) {
		code, verifier := f.code(c, codeOpts{})
		body := exchangeForm(code, verifier).Encode() + "&client_id=a&client_id=b"
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		wantError(t, f.do(r), 400, oauth.InvalidRequest)
	})
	t.Run("parameters in the query are ignored", func(t *testing.T) {
		code, verifier := f.code(c, codeOpts{})
		q := exchangeForm(code, verifier)
		q.Set("client_id", c.ID)
		r := httptest.NewRequest(http.MethodPost, "/token?"+q.Encode(), strings.NewReader(""))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		wantError(t, f.do(r), 401, oauth.InvalidClient)
	})
	t.Run("huge body", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("a="+strings.Repeat("x", 1<<20)))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		wantError(t, f.do(r), 400, oauth.InvalidRequest)
	})
}

func TestTokenCORS(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	p, err := cors.New(cors.Options{Clients: f.store, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.h.RegisterWith(mux, p.Handler)
	code, verifier := f.code(c, codeOpts{})
	r := tokenRequest(exchangeForm(code, verifier), public(c))
	r.Header.Set("Origin", "https://app.example.com")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if w.Code != http.StatusOK || w.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	// Preflight reaches the policy although /token serves only POST.
	r = httptest.NewRequest(http.MethodOptions, "/token", nil)
	r.Header.Set("Origin", "https://app.example.com")
	r.Header.Set("Access-Control-Request-Method", "POST")
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Methods") == "" {
		t.Fatalf("preflight %d %v", w.Code, w.Header())
	}
	// An error response to an unknown origin carries no CORS header.
	r = tokenRequest(exchangeForm("BAD", verifier), public(c))
	r.Header.Set("Origin", "https://evil.example.com")
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if w.Code != 400 || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	f := newFixture(t)
	cb, sb := f.client(oauth.AuthClientSecretBasic)
	cp, sp := f.client(oauth.AuthClientSecretPost)
	var secrets []string
	// Failures that log a cause: wrong secrets, wrong method, bad escapes, reuse.
	for _, a := range []auth{basic(cb, sb+"x"), post(cb, sb), basic(cp, sp), post(cp, sp+"y"),
		{rawBasic: "Basic " + base64.StdEncoding.EncodeToString([]byte(cb.ID+":"+sb+"%zz"))}} {
		code, verifier := f.code(cb, codeOpts{})
		f.exchange(code, verifier, a)
		secrets = append(secrets, code, verifier)
	}
	code, verifier := f.code(cb, codeOpts{})
	ok := wantOK(t, f.exchange(code, verifier, basic(cb, sb)))
	f.exchange(code, verifier, basic(cb, sb)) // reuse
	f.refresh(ok.str("refresh_token"), "", basic(cb, sb))
	f.userinfo(ok.str("access_token"))
	secrets = append(secrets, sb, sp, code, verifier, ok.str("access_token"), ok.str("refresh_token"), ok.str("id_token"))
	logs := f.logs.String()
	if !strings.Contains(logs, "oauth error") {
		t.Fatalf("nothing logged: %q", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) || strings.Contains(logs, s[:20]) {
			t.Errorf("a secret, code or token reached the log")
		}
	}
}
