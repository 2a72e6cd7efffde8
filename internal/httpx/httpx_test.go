package httpx

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

func TestParseOAuthForm(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		wantErr                 bool
	}{
		{"ok", "application/x-www-form-urlencoded", "grant_type=authorization_code&code=x", false},
		{"charset ok", "application/x-www-form-urlencoded; charset=utf-8", "a=1", false},
		{"json refused", "application/json", `{"a":1}`, true},
		{"missing type refused", "", "a=1", true},
		{"repeated parameter refused", "application/x-www-form-urlencoded", "code=a&code=b", true},
		{"oversized body refused", "application/x-www-form-urlencoded", "a=" + strings.Repeat("x", MaxFormBytes+1), true},
		{"bad escape refused", "application/x-www-form-urlencoded", "a=%zz", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			err := ParseOAuthForm(httptest.NewRecorder(), r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var oe *oauth.Error
			if err != nil && (!errors.As(err, &oe) || oe.Code != oauth.InvalidRequest) {
				t.Fatalf("err = %v, want invalid_request", err)
			}
		})
	}
}
