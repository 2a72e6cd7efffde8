package authorize

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
)

func TestGrant(t *testing.T) {
	client := scope.MustParseSet("openid launch launch/patient patient/*.cruds user/*.rs system/*.rs")
	patientRole := scope.MustParseSet("patient/*.rs " + nonResource)
	cases := []struct {
		req  string
		ehr  bool
		want string
	}{
		{"openid patient/Observation.rs", false, "openid patient/Observation.rs"},
		{"patient/*.cruds", false, "patient/*.rs"},
		{"user/*.rs system/*.rs", false, ""},
		{"launch openid", false, "openid"},
		{"launch openid", true, "launch openid"},
		{"profile openid", false, "openid"}, // profile not registered for the client
		{"patient/Observation.read", false, "patient/Observation.read"},
	}
	for _, c := range cases {
		got := Grant(scope.MustParseSet(c.req), client, patientRole, c.ehr).String()
		if got != c.want {
			t.Errorf("Grant(%q, ehr=%v) = %q, want %q", c.req, c.ehr, got, c.want)
		}
	}
}

func TestChecked(t *testing.T) {
	cand := scope.MustParseSet("openid patient/Observation.rs offline_access")
	got := Checked(cand, []string{"patient/Observation.rs", "patient/*.cruds", "system/*.rs", "openid"})
	if got.String() != "openid patient/Observation.rs" {
		t.Fatalf("Checked = %q", got)
	}
	if len(Checked(cand, nil)) != 0 {
		t.Fatal("nothing checked should grant nothing")
	}
}

func TestMatchRedirectURI(t *testing.T) {
	reg := []string{"https://app.example/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb?a=1"}
	ok := map[string]string{
		"https://app.example/cb":    "https://app.example/cb",
		"http://127.0.0.1/cb":       "http://127.0.0.1/cb",
		"http://127.0.0.1:49152/cb": "http://127.0.0.1:49152/cb",
		"http://[::1]/cb?a=1":       "http://[::1]/cb?a=1",
		"http://[::1]:1/cb?a=1":     "http://[::1]:1/cb?a=1",
	}
	for got, want := range ok {
		if u, match := matchRedirectURI(reg, got); !match || u != want {
			t.Errorf("%q: got %q %v", got, u, match)
		}
	}
	for _, bad := range []string{"", "https://app.example/cb/", "https://APP.example/cb", "https://app.example/cb?x",
		"https://app.example/cb#", "http://app.example/cb", "http://127.0.0.1:49152/cb2", "http://127.0.0.1.evil/cb",
		"http://127.0.0.1:/cb", "http://127.0.0.1:1234567/cb", "http://localhost/cb", "https://127.0.0.1/cb",
		"http://127.0.0.1@evil.example/cb", "http://[::1]/cb?a=2"} {
		if u, match := matchRedirectURI(reg, bad); match {
			t.Errorf("%q matched as %q", bad, u)
		}
	}
	if u, ok := matchRedirectURI([]string{"https://only.example/cb"}, ""); !ok || u != "https://only.example/cb" {
		t.Error("single registered URI should be the default")
	}
}

func TestAppendQueryKeepsExistingParams(t *testing.T) {
	h := &Handler{opts: Options{Issuer: "https://as.example"}}
	got := h.successURL("https://app.example/cb?b=2&a=1", "c+d", "s t")
	if got != "https://app.example/cb?b=2&a=1&code=c%2Bd&state=s+t&iss=https%3A%2F%2Fas.example" {
		t.Fatal(got)
	}
	got = h.errorURL("https://app.example/cb", "", oauth.Errorf(oauth.AccessDenied, "no"))
	if got != "https://app.example/cb?error=access_denied&error_description=no&iss=https%3A%2F%2Fas.example" {
		t.Fatal(got)
	}
}

func TestCSPOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://app.example:8443/cb?x=1": "https://app.example:8443",
		"http://127.0.0.1:5000/cb":        "http://127.0.0.1:5000",
		"com.example.app:/cb":             "com.example.app:",
		"::bad":                           "",
	} {
		if got := cspOrigin(in); got != want {
			t.Errorf("cspOrigin(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewValidatesOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("empty options accepted")
	}
}
