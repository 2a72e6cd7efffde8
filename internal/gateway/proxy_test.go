package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

func TestCredentialsNeverForwardedBasicInjected(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	r := f.do("GET", "/Patient/"+patientA, bearer(tok), "", "Cookie", "sid=abc", "DPoP", "x", "Connection", "X-Secret-Hop", "X-Secret-Hop", "1",
		upstream.DefaultIdentityHeader, "forged")
	if r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	up := f.spy.last()
	user, pass, ok := up.BasicAuth()
	if !ok || user != ehrUser || pass != ehrPass {
		t.Fatalf("upstream Authorization %q", up.Header.Get("Authorization"))
	}
	if strings.Contains(strings.Join(up.Header.Values("Authorization"), ","), tok) {
		t.Fatal("client token forwarded")
	}
	for _, h := range []string{"Cookie", "DPoP", "X-Secret-Hop", upstream.DefaultIdentityHeader} {
		if up.Header.Get(h) != "" {
			t.Errorf("%s forwarded", h)
		}
	}
	if up.Header.Get("X-Forwarded-For") == "" || up.Header.Get("X-Forwarded-Host") != "fhir.example.org" ||
		up.Header.Get("X-Forwarded-Proto") != "https" || up.Header.Get("X-Forwarded-Prefix") != "/fhir" {
		t.Errorf("forwarding headers %v", up.Header)
	}
	for _, h := range []string{"X-Content-Type-Options", "Cache-Control", "Referrer-Policy"} {
		if r.header.Get(h) == "" {
			t.Errorf("security header %s missing", h)
		}
	}
}

func TestAuditFailureRefuses(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	f.audit.Fail = errors.New("audit store down")
	// A read is audited at its answer: the answer is withheld.
	r := f.do("GET", "/Patient/"+patientA, bearer(tok), "")
	if r.status != http.StatusServiceUnavailable || outcomeText(r) == "" || strings.Contains(string(r.body), `"resourceType":"Patient"`) ||
		strings.Contains(string(r.body), patientA) {
		t.Fatalf("audit down: %d %s", r.status, r.body)
	}
	// A write is audited before forwarding: it never reaches the upstream.
	wtok, _ := f.token("patient/*.cruds", patientA)
	before := f.spy.count()
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patientA + `"}}`
	r = f.do("POST", "/Observation", bearer(wtok), obs, "Content-Type", "application/fhir+json")
	if r.status != http.StatusServiceUnavailable || outcomeText(r) == "" {
		t.Fatalf("audit down, write: %d %s", r.status, r.body)
	}
	if f.spy.count() != before {
		t.Fatal("write forwarded without an audit record")
	}
}

func TestMetadataAndSMARTConfiguration(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	r := f.do("GET", "/metadata", "", "")
	if r.status != 200 {
		t.Fatalf("metadata: %d %s", r.status, r.body)
	}
	var cs struct {
		ResourceType   string
		Implementation struct{ URL string }
		Rest           []struct {
			Security struct {
				Extension []struct {
					URL       string
					Extension []struct {
						URL      string
						ValueURI string `json:"valueUri"`
					}
				}
				Service []struct{ Coding []struct{ Code string } }
			}
		}
	}
	if err := json.Unmarshal(r.body, &cs); err != nil || cs.ResourceType != "CapabilityStatement" || len(cs.Rest) == 0 {
		t.Fatalf("%v %s", err, r.body)
	}
	sec := cs.Rest[0].Security
	uris := map[string]string{}
	for _, e := range sec.Extension {
		if e.URL == oauthURIsExtension {
			for _, x := range e.Extension {
				uris[x.URL] = x.ValueURI
			}
		}
	}
	if uris["authorize"] != issuerURL+"/authorize" || uris["token"] != issuerURL+"/token" || uris["register"] != issuerURL+"/register" {
		t.Fatalf("oauth-uris %v", uris)
	}
	if len(sec.Service) == 0 || sec.Service[0].Coding[0].Code != "SMART-on-FHIR" || cs.Implementation.URL != baseURL {
		t.Fatalf("security %+v impl %q", sec, cs.Implementation.URL)
	}
	r = f.do("GET", "/.well-known/smart-configuration", "", "")
	if r.status != 200 || r.json(t)["issuer"] != issuerURL {
		t.Fatalf("smart-configuration: %d %s", r.status, r.body)
	}
	// Other methods on metadata still need a token.
	if r := f.do("DELETE", "/metadata", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("DELETE metadata: %d", r.status)
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	pre := func(origin string) response {
		return f.do("OPTIONS", "/Patient/"+patientA, "", "", "Origin", origin,
			"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization, dpop")
	}
	r := pre(appOrigin)
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != appOrigin ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "DPoP") {
		t.Fatalf("allowed preflight: %d %v", r.status, r.header)
	}
	if r := pre("https://evil.example.net"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin allowed: %v", r.header)
	}
	tok, _ := f.token(patientAll, patientA)
	r = f.do("GET", "/Patient/"+patientA, bearer(tok), "", "Origin", appOrigin)
	if r.header.Get("Access-Control-Allow-Origin") != appOrigin ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "DPoP-Nonce") ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Fatalf("CORS response headers %v", r.header)
	}
	if r.header.Get("Access-Control-Allow-Credentials") != "" || r.header.Get("Access-Control-Allow-Origin") == "*" {
		t.Fatal("credentials or wildcard allowed")
	}
	r = f.do("GET", "/Patient/"+patientA, bearer(tok), "", "Origin", "https://evil.example.net")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("foreign origin got CORS headers")
	}
}

func TestUpstreamFailures(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	f := newFixture(t, fixtureOpts{upstream: slow, timeout: 200 * time.Millisecond})
	tok, _ := f.token("user/*.rs", "")
	r := f.do("GET", "/Observation/obs-001-01", bearer(tok), "")
	if r.status != http.StatusGatewayTimeout || !strings.HasPrefix(outcomeText(r), "timeout") {
		t.Fatalf("slow upstream: %d %s", r.status, r.body)
	}

	f2 := newFixture(t, fixtureOpts{})
	tok2, _ := f2.token("user/*.rs", "")
	f2.ehrSrv.Close()
	r = f2.do("GET", "/Observation/obs-001-01", bearer(tok2), "")
	if r.status != http.StatusBadGateway || strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), "refused") {
		t.Fatalf("down upstream: %d %s", r.status, r.body)
	}

	boom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "LegacyEHR/1.2")
		w.WriteHeader(500)
		_, _ = io.WriteString(w, "java.lang.NullPointerException at com.ehr.Db.query")
	})
	f3 := newFixture(t, fixtureOpts{upstream: boom})
	tok3, _ := f3.token("user/*.rs", "")
	r = f3.do("GET", "/Observation/obs-001-01", bearer(tok3), "")
	if r.status != 500 || strings.Contains(string(r.body), "java") || r.header.Get("Server") == "LegacyEHR/1.2" {
		t.Fatalf("upstream 500 leaked details: %d %v %s", r.status, r.header, r.body)
	}

	// The upstream rejecting the gateway's own credentials is a 502, not a 401 for the client.
	deny := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) })
	f4 := newFixture(t, fixtureOpts{upstream: deny})
	tok4, _ := f4.token("user/*.rs", "")
	if r := f4.do("GET", "/Observation/obs-001-01", bearer(tok4), ""); r.status != http.StatusBadGateway {
		t.Fatalf("upstream 401: %d", r.status)
	}
}

func TestBodyLimits(t *testing.T) {
	f := newFixture(t, fixtureOpts{maxResp: 2048})
	tok, _ := f.token(patientAll, patientA)
	// Inspected response larger than the limit: 502, not truncated data.
	r := f.do("GET", "/Observation?_count=50", bearer(tok), "")
	if r.status != http.StatusBadGateway {
		t.Fatalf("oversized inspected response: %d", r.status)
	}
	// Streamed response larger than the limit is cut, never completed.
	tok2, _ := f.token("user/*.rs", "")
	req, _ := http.NewRequest("GET", f.srv.URL+"/fhir/Observation?_count=50", nil)
	req.Header.Set("Authorization", bearer(tok2))
	resp, err := f.srv.Client().Do(req)
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && len(b) > 2048 {
			t.Fatalf("streamed response exceeded limit: %d bytes", len(b))
		}
	}
	big := `{"resourceType":"Observation","status":"final","code":{"text":"` + strings.Repeat("x", DefaultMaxRequestBytes) + `"},"subject":{"reference":"Patient/pt-001"}}`
	tok3, _ := f.token("patient/Observation.c", patientA)
	if r := f.do("POST", "/Observation", bearer(tok3), big); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized request: %d", r.status)
	}
}

func TestUnsupportedAndMalformed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token("user/*.cruds", "")
	for path, want := range map[string]int{
		"/Patient/bad!id":        http.StatusBadRequest,
		"/NotAType/1":            http.StatusBadRequest,
		"/Patient/1/$frobnicate": http.StatusBadRequest,
	} {
		if r := f.do("GET", path, bearer(tok), ""); r.status != want && r.status != http.StatusNotFound {
			t.Errorf("%s: %d", path, r.status)
		}
	}
	if !f.audit.Has(ActionFHIRRequest, audit.Failure) {
		t.Fatal("refusals not audited")
	}
}

func TestIdentityHeader(t *testing.T) {
	f := newFixture(t, fixtureOpts{identity: true})
	tok, c := f.token(patientAll, patientA)
	if r := f.do("GET", "/Patient/"+patientA, bearer(tok), "", upstream.DefaultIdentityHeader, "forged"); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	raw := f.spy.last().Header.Get(upstream.DefaultIdentityHeader)
	var claims upstream.IdentityClaims
	if err := f.keys.Verify(raw, []string{"ES256"}, upstream.IdentityTyp, &claims); err != nil {
		t.Fatalf("identity header %q: %v", raw, err)
	}
	if claims.Subject != c.Subject || claims.Patient != patientA || claims.ClientID != "app" || claims.Audience != f.ehrSrv.URL || claims.Scope != patientAll {
		t.Fatalf("claims %+v", claims)
	}
}

func TestSmugglingRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token("user/Observation.rs", "")
	// A query the gateway cannot parse is not forwarded for the upstream to read its own way.
	if r := f.do("GET", "/Observation?code=x;_include=Observation:patient", bearer(tok), ""); r.status != http.StatusBadRequest {
		t.Fatalf("semicolon query: %d", r.status)
	}
	if r := f.do("GET", "/Observation?code=%zz", bearer(tok), ""); r.status != http.StatusBadRequest {
		t.Fatalf("bad escape: %d", r.status)
	}
	// Method overrides never reach the upstream.
	if r := f.do("GET", "/Observation/obs-001-01", bearer(tok), "", "X-HTTP-Method-Override", "DELETE"); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	if h := f.spy.last().Header.Get("X-HTTP-Method-Override"); h != "" {
		t.Fatal("method override forwarded")
	}
	// Conditional create would be an existence oracle for other patients.
	tok2, _ := f.token("patient/Observation.c", patientA)
	body := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patientA + `"}}`
	if r := f.do("POST", "/Observation", bearer(tok2), body, "If-None-Exist", "subject=Patient/"+patientB); r.status != http.StatusBadRequest {
		t.Fatalf("conditional create: %d", r.status)
	}
}
