package audit

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// MaxFieldLen bounds every text field of a stored event (bytes).
const MaxFieldLen = 1024

// credential matches things that look like credentials inside free text: a
// JWT or JWS (three base64url parts starting with eyJ), an Authorization
// scheme with its value, and name=value pairs for common secret parameters.
var (
	credential = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*` +
		`|(?i)\b(?:bearer|dpop|basic)\s+[A-Za-z0-9._~+/=-]{8,}`)
	secretParam = regexp.MustCompile(`(?i)\b(access_token|refresh_token|id_token|client_secret|password|code|assertion|client_assertion|code_verifier)=[^&\s"]+`)
)

// Redact returns e with credential-looking text in its free-text fields
// replaced by "[redacted]", control characters replaced by spaces and every
// field cut to MaxFieldLen. Durable sinks store only redacted events, so a
// caller that mistakenly puts a token into a reason cannot persist it.
func Redact(e Event) Event {
	for _, p := range []*string{
		&e.Reason, &e.UserID, &e.FHIRUser, &e.ClientID, &e.SourceIP, &e.UserAgent,
		&e.Patient, &e.Scope, &e.TokenID, &e.RequestID, &e.Interaction,
		&e.ResourceType, &e.ResourceID, &e.AllowedBy,
	} {
		*p = clean(*p)
	}
	e.Action = Action(clean(string(e.Action)))
	e.Outcome = Outcome(clean(string(e.Outcome)))
	e.Binding = Binding(clean(string(e.Binding)))
	return e
}

func clean(s string) string {
	if s == "" {
		return s
	}
	printable, suspect := inspect(s)
	if !printable {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, strings.ToValidUTF8(s, "\uFFFD"))
		suspect = mayHoldCredential(s)
	}
	if suspect {
		s = secretParam.ReplaceAllString(s, "$1=[redacted]")
		s = credential.ReplaceAllString(s, "[redacted]")
	}
	if len(s) > MaxFieldLen {
		cut := MaxFieldLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// Byte classes for inspect.
const (
	plainByte   = iota // printable ASCII that starts no credential pattern
	controlByte        // a control character or not ASCII
	markByte           // '=' or the first letter of "eyJ", "bearer", "dpop", "basic"
)

var byteClass = func() (c [256]uint8) {
	for i := range c {
		if i < 0x20 || i >= 0x7f {
			c[i] = controlByte
		}
	}
	for _, b := range "=ebBdD" {
		c[b] = markByte
	}
	return c
}()

// inspect reports in one pass whether s is printable ASCII (it then needs
// no UTF-8 repair and has no control characters, the common case) and
// whether it may hold a credential (mayHoldCredential; only meaningful
// when printable).
func inspect(s string) (printable, suspect bool) {
	for i := 0; i < len(s); i++ {
		switch byteClass[s[i]] {
		case plainByte:
		case controlByte:
			return false, false
		default:
			if !suspect && credentialAt(s, i) {
				suspect = true
			}
		}
	}
	return true, suspect
}

// mayHoldCredential is a cheap pre-check: text without "eyJ", "=" or an
// authorization scheme word cannot match the credential patterns.
func mayHoldCredential(s string) bool {
	for i := 0; i < len(s); i++ {
		if byteClass[s[i]] == markByte && credentialAt(s, i) {
			return true
		}
	}
	return false
}

// credentialAt reports whether s[i:] starts with '=', "eyJ" or an
// authorization scheme word and a space (any case).
func credentialAt(s string, i int) bool {
	switch s[i] {
	case '=':
		return true
	case 'e':
		return strings.HasPrefix(s[i:], "eyJ")
	}
	w := s[i:min(i+7, len(s))]
	return hasFoldPrefix(w, "bearer ") || hasFoldPrefix(w, "dpop ") || hasFoldPrefix(w, "basic ")
}

func hasFoldPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
