package audit

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedactRemovesCredentials(t *testing.T) {
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXRleHQ"
	cases := []string{
		"token " + jwt + " was refused",
		"Authorization: Bearer abcdefghijklmnop",
		"DPoP qwertyuiopasdfgh",
		"basic dXNlcjpwYXNzd29yZA==",
		"/fhir/Patient?access_token=abc.def&_id=1",
		"client_secret=s3cr3t-value password=hunter2hunter2 code=AUTHCODE123",
	}
	for _, c := range cases {
		got := Redact(Event{Reason: c, UserAgent: c, RequestID: c}).Reason
		for _, leak := range []string{jwt, "abcdefghijklmnop", "qwertyuiopasdfgh", "dXNlcjpwYXNzd29yZA", "abc.def", "s3cr3t", "hunter2", "AUTHCODE123"} {
			if strings.Contains(got, leak) {
				t.Errorf("Redact(%q) = %q still holds %q", c, got, leak)
			}
		}
	}
}

func TestRedactKeepsOrdinaryText(t *testing.T) {
	e := Event{Reason: "invalid_grant: the authorization code has expired", Scope: "patient/Observation.rs openid launch", UserAgent: "Mozilla/5.0 (X11)"}
	if got := Redact(e); got != e {
		t.Fatalf("Redact changed ordinary text: %+v", got)
	}
}

func TestRedactBoundsAndControls(t *testing.T) {
	got := Redact(Event{Reason: strings.Repeat("é", MaxFieldLen), UserAgent: "a\r\nInjected: header\x00"})
	if len(got.Reason) > MaxFieldLen || !strings.HasPrefix(got.Reason, "é") || strings.ContainsRune(got.Reason, '\uFFFD') {
		t.Fatalf("reason not cut at a rune boundary: %d bytes", len(got.Reason))
	}
	if strings.ContainsAny(got.UserAgent, "\r\n\x00") {
		t.Fatalf("control characters kept: %q", got.UserAgent)
	}
}

// Every cleaned field is valid UTF-8 without control characters (DEL
// included) and within MaxFieldLen, whatever the input.
func FuzzRedactField(f *testing.F) {
	for _, s := range []string{"plain text", "a\x7fb", "bad \xff utf8", "tab\there", "Bearer abcdefghijk", "é\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Redact(Event{Reason: s}).Reason
		if !utf8.ValidString(got) || len(got) > MaxFieldLen {
			t.Fatalf("Redact(%q) = %q", s, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("Redact(%q) = %q keeps a control character", s, got)
			}
		}
		if printable, suspect := inspect(s); printable && !suspect && len(s) <= MaxFieldLen && got != s {
			t.Fatalf("Redact changed ordinary text %q into %q", s, got)
		}
		// Nothing credential-shaped survives (short inputs, so the cut
		// at MaxFieldLen cannot split a "[redacted]").
		if len(s) <= 200 {
			if m := credential.FindString(got); m != "" {
				t.Fatalf("Redact(%q) = %q keeps %q", s, got, m)
			}
			for _, m := range secretParam.FindAllString(got, -1) {
				if !strings.HasSuffix(m, "=[redacted]") {
					t.Fatalf("Redact(%q) = %q keeps %q", s, got, m)
				}
			}
		}
	})
}

// BenchmarkRedact measures redaction of a typical gateway event, which
// holds no credential.
func BenchmarkRedact(b *testing.B) {
	e := Event{Action: "gateway.read", Outcome: "success", UserID: "user-123", FHIRUser: "Practitioner/pr-1",
		ClientID: "growth-chart-app", SourceIP: "192.0.2.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) SMART-app/2.1",
		Patient: "pat-4711", Scope: "launch/patient openid fhirUser offline_access patient/Observation.rs patient/Patient.rs",
		TokenID: "8f14e45fceea167a5a36dedd4bea2543", RequestID: "b1946ac92492d2347c6235b4d2611184",
		Interaction: "read", ResourceType: "Observation", ResourceID: "obs-99", AllowedBy: "patient/Observation.rs", Binding: "dpop"}
	for b.Loop() {
		_ = Redact(e)
	}
}

// TestRedactLeavesNoCredential redacts many random joins of credential
// fragments, schemes, separators and control bytes (deterministic, unlike
// the fuzz target) and checks that nothing credential-shaped survives and
// that text the pre-check clears is left as it was.
func TestRedactLeavesNoCredential(t *testing.T) {
	parts := []string{"eyJ", "eyJhbGci", ".", "Bearer ", "bearer", "DPoP ", "dpop\t", "basic ", "Basic  ", "code=",
		"password=", "access_token=", "=", "&", " ", "abcdefgh", "ABCD1234", "é", "\x00", "\xff", "~+/", "-_", "\"",
		"e", "b", "d", "[redacted]"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50000 {
		var sb strings.Builder
		for k := r.IntN(12); k >= 0; k-- {
			sb.WriteString(parts[r.IntN(len(parts))])
		}
		s := sb.String()
		got := Redact(Event{Reason: s}).Reason
		if m := credential.FindString(got); m != "" {
			t.Fatalf("Redact(%q) = %q keeps %q", s, got, m)
		}
		for _, m := range secretParam.FindAllString(got, -1) {
			if !strings.HasSuffix(m, "=[redacted]") {
				t.Fatalf("Redact(%q) = %q keeps %q", s, got, m)
			}
		}
		if printable, suspect := inspect(s); printable && !suspect && got != s {
			t.Fatalf("Redact changed ordinary text %q into %q", s, got)
		}
	}
}
