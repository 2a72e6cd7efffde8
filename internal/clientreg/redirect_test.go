package clientreg

import (
	"errors"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

func TestValidateRedirectURI(t *testing.T) {
	cases := []struct {
		uri     string
		ok      bool
		mention string // a word the description must contain
	}{
		// Accepted.
		{"https://app.example.com/callback", true, ""},
		{"https://app.example.com:8443/cb?x=1", true, ""},
		{"https://inferno.example.org/custom/smart/redirect", true, ""},
		{"http://127.0.0.1/cb", true, ""},
		{"http://127.0.0.1:51004/oauth2redirect", true, ""},
		{"http://127.8.9.10:1234/cb", true, ""},
		{"http://[::1]/cb", true, ""},
		{"http://[::1]:61023/cb", true, ""},
		{"com.example.app:/oauth2redirect", true, ""},
		{"com.example.app:/cb?x=1", true, ""},
		{"org.example.native.app://callback", true, ""},

		// Refused.
		{"", false, "empty"},
		{"http://app.example.com/cb", false, "loopback"},
		{"http://192.168.1.10/cb", false, "loopback"},
		{"http://10.0.0.1:8080/cb", false, "loopback"},
		{"http://localhost/cb", false, "8252 §8.3"},
		{"http://localhost:3000/cb", false, "127.0.0.1"},
		{"http://LOCALHOST:3000/cb", false, "8252 §8.3"},
		{"http://app.localhost/cb", false, "localhost"},
		{"http://127.1/cb", false, "loopback"},
		{"http://0x7f.0.0.1/cb", false, "loopback"},
		{"http://[::ffff:127.0.0.1]/cb", false, "loopback"},
		{"http://[fe80::1%25eth0]/cb", false, ""},
		{"http://0.0.0.0/cb", false, "loopback"},
		{"https://app.example.com/cb#frag", false, "fragment"},
		{"https://app.example.com/cb#", false, "fragment"},
		{"https://*.example.com/cb", false, "wildcard"},
		{"https://app.example.com/*", false, "wildcard"},
		{"/cb", false, "absolute"},
		{"app.example.com/cb", false, "absolute"},
		{"//app.example.com/cb", false, "absolute"},
		{"https://user:pass@app.example.com/cb", false, "user information"},
		{"https://user@app.example.com/cb", false, "user information"},
		{"http://user@127.0.0.1/cb", false, "user information"},
		{"javascript:alert(1)", false, "javascript"},
		{"JavaScript:alert(1)", false, "javascript"},
		{"data:text/html,<script>alert(1)</script>", false, ""},
		{"vbscript:msgbox", false, "vbscript"},
		{"file:///etc/passwd", false, "file"},
		{"ftp://app.example.com/cb", false, "ftp"},
		{"myapp:/cb", false, "reverse-DNS"},
		{"myapp://cb", false, "8252 §7.1"},
		{"com.example.app:", false, "path"},
		{"https:///cb", false, "host"},
		{"https:app.example.com", false, "host"},
		{"https://app.example.com/c b", false, "printable"},
		{"https://app.example.com/cb\n", false, "printable"},
		{"https://app.example.com/\u00e9", false, "printable"},
		{"https://app.example.com/" + strings.Repeat("a", MaxURILength), false, "longer"},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			err := ValidateRedirectURI(tc.uri)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("err = %v, want *oauth.Error", err)
			}
			if oe.Code != oauth.InvalidRedirectURI {
				t.Fatalf("code = %s, want invalid_redirect_uri", oe.Code)
			}
			if !strings.Contains(strings.ToLower(oe.Description), strings.ToLower(tc.mention)) {
				t.Fatalf("description %q does not mention %q", oe.Description, tc.mention)
			}
		})
	}
}

func FuzzValidateRedirectURI(f *testing.F) {
	for _, s := range []string{"https://a.example/cb", "http://127.0.0.1:1/x", "com.example.app:/cb", "http://localhost/", "javascript:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateRedirectURI(s)
		if err == nil {
			// Whatever is accepted must never carry a fragment, wildcard,
			// whitespace or a forbidden scheme.
			if strings.ContainsAny(s, "#* \t\r\n") {
				t.Fatalf("accepted %q", s)
			}
			low := strings.ToLower(s)
			for _, scheme := range []string{"javascript", "vbscript", "data", "file", "blob", "about", "ftp"} {
				if strings.HasPrefix(low, scheme+":") {
					t.Fatalf("accepted %q", s)
				}
			}
			if strings.HasPrefix(low, "http:") && !strings.HasPrefix(low, "http://127.") && !strings.HasPrefix(low, "http://[::1]") {
				t.Fatalf("accepted non-loopback http %q", s)
			}
			return
		}
		if oauth.As(err).Code != oauth.InvalidRedirectURI {
			t.Fatalf("wrong code for %q: %v", s, err)
		}
	})
}
