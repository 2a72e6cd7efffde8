package config

import (
	"strconv"
	"strings"
)

// derivedKeys have no fixed default: Finish derives them.
var derivedKeys = map[string]string{
	"issuer":    "https://auth.example.org   # default http://{addr} (https://{addr} with TLS)",
	"fhir_base": "https://ehr.example.org/fhir   # default {issuer}/fhir",
}

// Example returns the text of fhirgate.example.yaml: every configuration
// section and key with its default and its description, plus the
// YAML-only upstreams list as a commented example. A test keeps the file
// in the repository equal to it.
func Example() string {
	var b strings.Builder
	b.WriteString(`# fhirgate configuration example (generated from internal/config: the
# values shown are the defaults). Every key is optional. Each key can also
# be set with an environment variable (see README.md, "Configuration
# reference"); environment variables override this file, and command-line
# flags override both. Keep secrets (keys.kek, dpop.nonce_key, *redis_url,
# gateway.upstream_auth, anomaly.webhook_secret) in environment variables.

`)
	section := ""
	for _, f := range Fields() {
		top, sub, nested := strings.Cut(f.Key, ".")
		indent := ""
		if nested {
			if top != section {
				b.WriteString("\n" + top + ":\n")
				section = top
			}
			indent = "  "
		} else {
			if section != "" {
				b.WriteString("\n")
			}
			section = ""
			sub = top
		}
		b.WriteString(indent + "# " + f.Doc)
		if f.Env != "" {
			b.WriteString(" (" + f.Env + ")")
		}
		b.WriteString("\n")
		if ex, ok := derivedKeys[f.Key]; ok {
			b.WriteString(indent + "# " + sub + ": " + ex + "\n")
			continue
		}
		b.WriteString(indent + sub + ": " + yamlScalar(f.Default) + "\n")
	}
	b.WriteString(`
# Several upstreams by FHIR path prefix (YAML only); see README "FHIR gateway".
# upstreams:
#   - prefix: /
#     url: https://ehr.internal.example/fhir        # example
#     auth: {type: basic, username: fhirgate, password: "..."}
`)
	return b.String()
}

// yamlScalar writes s as a plain YAML scalar when that reads back as the
// same string, else double-quoted.
func yamlScalar(s string) string {
	if s == "" {
		return `""`
	}
	plain := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/-", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return strconv.Quote(s)
}
