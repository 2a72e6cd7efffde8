package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Problem is one configuration problem, naming its key.
type Problem struct {
	Key     string
	Message string
}

// String renders "key: message".
func (p Problem) String() string { return p.Key + ": " + p.Message }

// Problems is a list of problems.
type Problems []Problem

// ValidationError carries every problem found. errors.Is(err, ErrInvalid) holds.
type ValidationError struct {
	Problems Problems
}

// Error lists every problem, one per line after the first.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Keys returns the keys named by the problems.
func (e *ValidationError) Keys() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Key
	}
	return out
}

// Validate reports every problem of c (after Finish) in one error. It returns
// nil when c is usable.
func (c *Config) Validate() error {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}

	// addr
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		add("addr", "must be host:port, got %q", c.Addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("addr", "port must be a number 0-65535, got %q", port)
	}

	// issuer
	if c.Issuer == "" {
		add("issuer", "required when addr does not name a host (got addr %q)", c.Addr)
	} else if u, msg := checkURL(c.Issuer); msg != "" {
		add("issuer", "%s", msg)
	} else {
		if u.Scheme != "https" && !isLoopback(u.Hostname()) {
			add("issuer", "must be https unless its host is loopback, got %q", c.Issuer)
		}
		if strings.HasSuffix(u.Path, "/") {
			add("issuer", "must not end with /, got %q", c.Issuer)
		}
		if u.User != nil {
			add("issuer", "must not carry user info")
		}
	}

	// fhir_base
	if c.FHIRBase == "" {
		add("fhir_base", "required")
	} else if u, msg := checkURL(c.FHIRBase); msg != "" {
		add("fhir_base", "%s", msg)
	} else if u.User != nil {
		add("fhir_base", "must not carry user info")
	}

	if strings.TrimSpace(c.DataDir) == "" && c.Storage.Driver != "postgres" {
		add("data_dir", "required with storage.driver sqlite")
	}

	switch c.Storage.Driver {
	case "sqlite":
	case "postgres":
		if c.Storage.DSN == "" {
			add("storage.dsn", "required with storage.driver postgres")
		}
	default:
		add("storage.driver", "must be sqlite or postgres, got %q", c.Storage.Driver)
	}

	// TLS and the listener rule.
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		if c.TLS.CertFile == "" {
			add("tls.cert_file", "required when tls.key_file is set")
		} else {
			add("tls.key_file", "required when tls.cert_file is set")
		}
	}
	if err == nil && !c.TLSEnabled() && !isLoopback(host) && !c.InsecureHTTPBehindProxy {
		add("addr", "plain http on the non-loopback address %q is refused: set tls.cert_file and tls.key_file, or insecure_http_behind_proxy: true when a TLS-terminating proxy sits in front", c.Addr)
	}

	// KEK: the development KEK is only for a loopback issuer.
	if c.Keys.KEK != "" {
		if _, err := decodeKEK(c.Keys.KEK); err != nil {
			add("keys.kek", "%v (generate one with: head -c 32 /dev/urandom | base64)", trimInvalid(err))
		}
	} else if c.Issuer != "" && !c.IssuerIsLoopback() {
		add("keys.kek", "required when the issuer is not loopback (FHIRGATE_KEK; generate one with: head -c 32 /dev/urandom | base64)")
	}

	// Token lifetimes.
	checkTTL := func(key string, d, max time.Duration) {
		switch {
		case d <= 0:
			add(key, "must be positive, got %s", d)
		case max > 0 && d > max:
			add(key, "must be at most %s, got %s", formatDuration(max), formatDuration(d))
		}
	}
	checkTTL("tokens.access_token_ttl", c.Tokens.AccessTokenTTL, MaxAccessTokenTTL)
	checkTTL("tokens.id_token_ttl", c.Tokens.IDTokenTTL, MaxIDTokenTTL)
	checkTTL("tokens.refresh_idle", c.Tokens.RefreshIdle, 0)
	checkTTL("tokens.refresh_absolute", c.Tokens.RefreshAbsolute, 0)
	if c.Tokens.RefreshIdle > 0 && c.Tokens.RefreshAbsolute > 0 && c.Tokens.RefreshAbsolute < c.Tokens.RefreshIdle {
		add("tokens.refresh_absolute", "must be at least tokens.refresh_idle (%s)", formatDuration(c.Tokens.RefreshIdle))
	}
	checkTTL("tokens.code_ttl", c.Tokens.CodeTTL, MaxCodeTTL)
	c.validateLifecycle(add)

	if c.Login.MaxFailures < 1 {
		add("login.max_failures", "must be at least 1, got %d", c.Login.MaxFailures)
	}
	checkTTL("login.lockout", c.Login.Lockout, 0)
	for _, r := range c.Login.RequireMFAFor.Roles() {
		if r != "patient" && r != "clinician" && r != "admin" {
			add("login.require_mfa_for", "roles are patient, clinician or admin, got %q", r)
		}
	}
	if m := c.Login.MFAEnrolment; m != "self" && m != "provisioned" {
		add("login.mfa_enrolment", "must be self or provisioned, got %q", m)
	}

	for _, r := range []struct{ key, val string }{
		{"roles.patient", c.Roles.Patient},
		{"roles.clinician", c.Roles.Clinician},
		{"roles.admin", c.Roles.Admin},
	} {
		if err := checkRoleScopes(r.val); err != nil {
			add(r.key, "%v", err)
		}
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}

	c.validateGateway(add)
	c.validateProtect(add)
	c.validateAudit(add)
	c.validateBinding(add)
	c.validateClients(add)

	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// checkURL parses an absolute http(s) URL without query or fragment.
func checkURL(s string) (*url.URL, string) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Sprintf("not a URL: %q", s)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Sprintf("must be an absolute http or https URL, got %q", s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Sprintf("must name a host, got %q", s)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Sprintf("must not have a query, got %q", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Sprintf("must not have a fragment, got %q", s)
	}
	return u, ""
}

func trimInvalid(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}
