package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoehr"
)

// rpResult is what oidc-rp.mjs reports at the end.
type rpResult struct {
	Steps              []string `json:"steps"`
	PAR                bool     `json:"par"`
	DPoP               bool     `json:"dpop"`
	DPoPJKT            string   `json:"dpopJkt"`
	TokenType          string   `json:"tokenType"`
	Scope              string   `json:"scope"`
	Patient            string   `json:"patient"`
	Sub                string   `json:"sub"`
	IDTokenIss         string   `json:"idTokenIss"`
	HasRefresh         bool     `json:"hasRefresh"`
	UserinfoSub        string   `json:"userinfoSub"`
	UserinfoFHIRUser   string   `json:"userinfoFHIRUser"`
	RefreshedTokenType string   `json:"refreshedTokenType"`
	RefreshRotated     bool     `json:"refreshRotated"`
	GatewayStatus      any      `json:"gatewayStatus"`
	Introspection      *struct {
		Active    bool              `json:"active"`
		Cnf       map[string]string `json:"cnf"`
		TokenType *string           `json:"token_type"`
	} `json:"introspection"`
	AfterRevoke string `json:"afterRevoke"`
	OldRefresh  string `json:"oldRefresh"`
}

// rpLine is one line the Node relying party prints.
type rpLine struct {
	AuthorizeURL string    `json:"authorize_url"`
	PAR          bool      `json:"par"`
	DPoP         bool      `json:"dpop"`
	Result       *rpResult `json:"result"`
	Error        string    `json:"error"`
	OAuth        string    `json:"oauth"`
	Description  string    `json:"description"`
	Cause        string    `json:"cause"`
}

// serverMetadata reads the OpenID Provider metadata.
func serverMetadata(t *testing.T, s *server) map[string]any {
	t.Helper()
	resp, err := http.Get(s.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(readAll(t, resp.Body)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// callbackCatcher is the relying party's redirect URI: it records the URL
// the browser lands on and hands it to the Node process.
type callbackCatcher struct {
	srv *httptest.Server
	got chan string
}

func newCallbackCatcher(t *testing.T) *callbackCatcher {
	c := &callbackCatcher{got: make(chan string, 1)}
	var once sync.Once
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cb" {
			http.NotFound(w, r)
			return
		}
		once.Do(func() { c.got <- c.srv.URL + r.URL.RequestURI() })
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Referrer-Policy", "no-referrer")
		fmt.Fprint(w, `<!doctype html><title>openid-client RP</title><h1>Signed in</h1><p>The relying party (openid-client) completes the code exchange.</p>`)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// TestOpenIDClient: npm openid-client (6.x) against fhirgate: discovery,
// authorization code with PKCE (the person's part in Chromium), PAR and
// DPoP-bound tokens when the server advertises them, userinfo, refresh with
// rotation, a gateway read, introspection and revocation.
func TestOpenIDClient(t *testing.T) {
	node := needNode(t, "openid-client")
	s := startServer(t, nil)
	b := newBrowser(t)
	meta := serverMetadata(t, s)
	_, hasPAR := meta["pushed_authorization_request_endpoint"]
	_, hasDPoP := meta["dpop_signing_alg_values_supported"]
	_, hasRevoke := meta["revocation_endpoint"]
	_, hasIntrospect := meta["introspection_endpoint"]

	cb := newCallbackCatcher(t)
	redirectURI := cb.srv.URL + "/cb"
	scope := "openid fhirUser launch/patient offline_access patient/*.rs"
	clientID, secret := s.client(t, clientreg.Metadata{
		ClientName: "openid-client e2e RP", RedirectURIs: []string{redirectURI}, Scope: scope,
		TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		DPoPBoundAccessTokens:   hasDPoP, RequirePushedAuthorizationRequests: hasPAR,
	})
	pt := demoehr.PatientID(demoPatientN)
	in, _ := json.Marshal(map[string]any{
		"issuer": s.issuer, "clientId": clientID, "clientSecret": secret, "redirectUri": redirectURI,
		"scope": scope, "fhirBase": s.fhirBase, "patientId": pt,
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "oidc-rp.mjs", string(in))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { // on failure paths node may still wait for its stdin
		_ = stdin.Close()
		cancel()
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func(what string) rpLine {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("openid-client RP ended before %s: %v\n%s", what, lines.Err(), stderr.String())
		}
		var l rpLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("RP line %q: %v", lines.Text(), err)
		}
		if l.Error != "" {
			t.Fatalf("openid-client RP failed at %s: %s\noauth error %q: %s\ncause: %s\n%s", what, l.Error, l.OAuth, l.Description, l.Cause, stderr.String())
		}
		return l
	}

	first := next("the authorization URL")
	if first.PAR != hasPAR || first.DPoP != hasDPoP {
		t.Fatalf("RP used PAR=%v DPoP=%v, server advertises PAR=%v DPoP=%v", first.PAR, first.DPoP, hasPAR, hasDPoP)
	}
	if hasPAR && (!strings.Contains(first.AuthorizeURL, "request_uri=") || strings.Contains(first.AuthorizeURL, "code_challenge=")) {
		t.Fatalf("PAR authorization URL carries the request itself: %s", first.AuthorizeURL)
	}
	b.do("open the authorization URL", chromedp.Navigate(first.AuthorizeURL))
	b.waitLogin(s)
	b.login(patientUser, patientPassword)
	b.consent()
	var callback string
	select {
	case callback = <-cb.got:
	case <-time.After(pageWait):
		b.fail("the redirect to the relying party", fmt.Errorf("no callback"))
	}
	b.waitPath("/cb")
	b.shot("callback")
	if _, err := io.WriteString(stdin, callback+"\n"); err != nil {
		t.Fatal(err)
	}
	r := next("the token exchange").Result
	if r == nil {
		t.Fatal("no result")
	}
	t.Logf("openid-client steps: %v", r.Steps)

	if r.Patient != pt || r.IDTokenIss != s.issuer || r.Sub == "" || r.UserinfoSub != r.Sub || !r.HasRefresh {
		t.Fatalf("result %+v", r)
	}
	if !strings.HasSuffix(r.UserinfoFHIRUser, "Patient/"+pt) {
		t.Fatalf("userinfo fhirUser %q", r.UserinfoFHIRUser)
	}
	if !r.RefreshRotated {
		t.Fatal("refresh token not rotated")
	}
	if fmt.Sprint(r.GatewayStatus) != "200" {
		t.Fatalf("gateway read with the refreshed token: %v", r.GatewayStatus)
	}
	wantType := "bearer"
	if hasDPoP {
		wantType = "dpop"
	}
	if !strings.EqualFold(r.TokenType, wantType) || !strings.EqualFold(r.RefreshedTokenType, wantType) {
		t.Fatalf("token_type %q then %q, want %s", r.TokenType, r.RefreshedTokenType, wantType)
	}
	if hasIntrospect {
		if r.Introspection == nil || !r.Introspection.Active {
			t.Fatalf("introspection %+v", r.Introspection)
		}
		if hasDPoP && r.Introspection.Cnf["jkt"] != r.DPoPJKT {
			t.Fatalf("introspected cnf %v, want jkt %s", r.Introspection.Cnf, r.DPoPJKT)
		}
	}
	if hasRevoke {
		if r.AfterRevoke != "invalid_grant" || r.OldRefresh != "invalid_grant" {
			t.Fatalf("refresh after revocation %q, rotated-away token %q; want invalid_grant", r.AfterRevoke, r.OldRefresh)
		}
	}
	var missing []string
	for name, ok := range map[string]bool{"PAR (pushed_authorization_request_endpoint)": hasPAR, "DPoP (dpop_signing_alg_values_supported)": hasDPoP,
		"revocation (revocation_endpoint)": hasRevoke, "introspection (introspection_endpoint)": hasIntrospect} {
		if !ok {
			missing = append(missing, name)
		}
	}
	need(t, len(missing) == 0, "passed %v; not advertised by the server, so not tested: %s", r.Steps, strings.Join(missing, ", "))
}
