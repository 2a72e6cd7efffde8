// Package config is fhirgate's typed configuration: a YAML file, FHIRGATE_*
// environment overrides and command-line overrides, in that order, then
// defaults and a Validate step that reports every problem, each naming its key.
//
// Only internal/app and cmd/fhirgate import this package; features take their
// own small Options structs.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole fhirgate configuration. Every field carries its YAML
// key (`yaml`), its environment variable (`env`) and a one-line description
// (`doc`), from which the README table is written.
type Config struct {
	Addr                    string           `yaml:"addr" env:"FHIRGATE_ADDR" doc:"listen address host:port"`
	Issuer                  string           `yaml:"issuer" env:"FHIRGATE_ISSUER" doc:"issuer URL; https unless its host is loopback"`
	FHIRBase                string           `yaml:"fhir_base" env:"FHIRGATE_FHIR_BASE" doc:"FHIR base URL apps send as aud"`
	DataDir                 string           `yaml:"data_dir" env:"FHIRGATE_DATA_DIR" doc:"directory of the SQLite database"`
	Storage                 Storage          `yaml:"storage"`
	TLS                     TLS              `yaml:"tls"`
	InsecureHTTPBehindProxy bool             `yaml:"insecure_http_behind_proxy" env:"FHIRGATE_INSECURE_HTTP_BEHIND_PROXY" doc:"allow plain http on a non-loopback address (TLS terminated by a proxy)"`
	Keys                    Keys             `yaml:"keys"`
	Tokens                  Tokens           `yaml:"tokens"`
	Login                   Login            `yaml:"login"`
	Roles                   Roles            `yaml:"roles"`
	Log                     Log              `yaml:"log"`
	Gateway                 Gateway          `yaml:"gateway"`
	Revocation              Revocation       `yaml:"revocation"`
	PAR                     PAR              `yaml:"par"`
	ClientAuth              ClientAuth       `yaml:"client_auth"`
	Registration            Registration     `yaml:"registration"`
	DPoP                    DPoP             `yaml:"dpop"`
	MTLS                    MTLS             `yaml:"mtls"`
	SenderConstraint        SenderConstraint `yaml:"sender_constraint"`
	Replay                  Replay           `yaml:"replay"`
	Audit                   Audit            `yaml:"audit"`
	Admin                   Admin            `yaml:"admin"`
	RateLimit               RateLimit        `yaml:"ratelimit"`
	Anomaly                 Anomaly          `yaml:"anomaly"`
	// Upstreams lists the gateway's backends by path prefix (YAML only).
	Upstreams []Upstream `yaml:"upstreams"`

	// issuerDerived and fhirBaseDerived record that the value was filled in
	// from addr (or issuer), so SetListenAddr can re-derive it once the real
	// port of a ":0" listener is known.
	issuerDerived   bool
	fhirBaseDerived bool
}

// Storage selects the backend.
type Storage struct {
	Driver string `yaml:"driver" env:"FHIRGATE_STORAGE_DRIVER" doc:"sqlite or postgres"`
	DSN    string `yaml:"dsn" env:"FHIRGATE_STORAGE_DSN" doc:"PostgreSQL connection string (postgres only)"`
}

// TLS names the server certificate. Both or neither must be set.
type TLS struct {
	CertFile string `yaml:"cert_file" env:"FHIRGATE_TLS_CERT_FILE" doc:"PEM certificate chain; enables TLS with key_file"`
	KeyFile  string `yaml:"key_file" env:"FHIRGATE_TLS_KEY_FILE" doc:"PEM private key"`
}

// Keys configures signing-key protection.
type Keys struct {
	KEK string `yaml:"kek" env:"FHIRGATE_KEK" doc:"base64 of 32 random bytes encrypting signing keys at rest; empty = development KEK (loopback issuer only)" secret:"true"`
	// RotationPeriod and Prepublish schedule signing-key rotation.
	RotationPeriod time.Duration `yaml:"rotation_period" env:"FHIRGATE_KEY_ROTATION_PERIOD" doc:"scheduled signing-key rotation period, e.g. 720h; 0 = off"`
	Prepublish     time.Duration `yaml:"prepublish" env:"FHIRGATE_KEY_PREPUBLISH" doc:"how long the next signing key is published before it signs; 0 = 24h (at most half the period)"`
}

// Tokens holds token lifetimes.
type Tokens struct {
	AccessTokenTTL     time.Duration `yaml:"access_token_ttl" env:"FHIRGATE_ACCESS_TOKEN_TTL" doc:"access token lifetime, at most 60m"`
	IDTokenTTL         time.Duration `yaml:"id_token_ttl" env:"FHIRGATE_ID_TOKEN_TTL" doc:"id_token lifetime, at most 60m"`
	RefreshIdle        time.Duration `yaml:"refresh_idle" env:"FHIRGATE_REFRESH_IDLE" doc:"refresh token idle lifetime"`
	RefreshAbsolute    time.Duration `yaml:"refresh_absolute" env:"FHIRGATE_REFRESH_ABSOLUTE" doc:"refresh token family absolute lifetime, >= refresh_idle"`
	CodeTTL            time.Duration `yaml:"code_ttl" env:"FHIRGATE_CODE_TTL" doc:"authorization code lifetime, at most 60s"`
	RefreshRetryWindow time.Duration `yaml:"refresh_retry_window" env:"FHIRGATE_REFRESH_RETRY_WINDOW" doc:"after a rotation, the previous refresh token may be retried this long while its successor is unused; 0 = never"`
	// BackendAccessTokenTTL is the client_credentials token lifetime.
	BackendAccessTokenTTL time.Duration `yaml:"backend_access_token_ttl" env:"FHIRGATE_BACKEND_ACCESS_TOKEN_TTL" doc:"client_credentials (SMART Backend Services) access token lifetime, at most 60m"`
}

// PAR configures pushed authorization requests (RFC 9126).
type PAR struct {
	Required bool          `yaml:"required" env:"FHIRGATE_PAR_REQUIRED" doc:"every authorization request must be pushed to /par first"`
	TTL      time.Duration `yaml:"ttl" env:"FHIRGATE_PAR_TTL" doc:"lifetime of a request_uri, at most 10m"`
}

// ClientAuth configures asymmetric client authentication.
type ClientAuth struct {
	JWKSTimeout  time.Duration `yaml:"jwks_timeout" env:"FHIRGATE_CLIENT_JWKS_TIMEOUT" doc:"timeout fetching a client's jwks_uri"`
	JWKSMaxBytes int           `yaml:"jwks_max_bytes" env:"FHIRGATE_CLIENT_JWKS_MAX_BYTES" doc:"largest jwks_uri response accepted"`
	JWKSCacheTTL time.Duration `yaml:"jwks_cache_ttl" env:"FHIRGATE_CLIENT_JWKS_CACHE_TTL" doc:"how long a fetched jwks_uri set is cached"`
	// CacheTTL is how long /token, /par, /revoke and /introspect reuse a
	// client record read from the store.
	CacheTTL time.Duration `yaml:"cache_ttl" env:"FHIRGATE_CLIENT_CACHE_TTL" doc:"how long the token endpoints reuse a client record read from the store (0 = read it on every request); a client disabled, changed or deleted is seen at most this late"`
	// Insecure switches for tests and closed networks.
	InsecureJWKSPrivateAddresses bool   `yaml:"insecure_jwks_private_addresses" env:"FHIRGATE_CLIENT_INSECURE_JWKS_PRIVATE_ADDRESSES" doc:"let jwks_uri fetches reach loopback, private and link-local addresses"`
	InsecureJWKSHTTPLoopback     bool   `yaml:"insecure_jwks_http_loopback" env:"FHIRGATE_CLIENT_INSECURE_JWKS_HTTP_LOOPBACK" doc:"accept http:// jwks_uri on loopback hosts (tests)"`
	CAFile                       string `yaml:"ca_file" env:"FHIRGATE_CLIENT_CA_FILE" doc:"PEM CA certificates that issue tls_client_auth client certificates; empty = tls_client_auth off"`
}

// Registration configures dynamic client registration.
type Registration struct {
	AllowBackendClients bool `yaml:"allow_backend_clients" env:"FHIRGATE_REGISTRATION_ALLOW_BACKEND_CLIENTS" doc:"let /register create client_credentials (system/ scope) clients"`
}

// Login holds the login throttling settings.
type Login struct {
	MaxFailures int           `yaml:"max_failures" env:"FHIRGATE_LOGIN_MAX_FAILURES" doc:"consecutive failed logins that lock an account"`
	Lockout     time.Duration `yaml:"lockout" env:"FHIRGATE_LOGIN_LOCKOUT" doc:"how long a locked account stays locked"`
	// RequireMFAFor lists the roles (patient, clinician, admin) that must
	// sign in with a second factor (TOTP); YAML only, e.g. [clinician, admin].
	// Users who enrolled one always use it; the admin console always needs it.
	RequireMFAFor RoleList `yaml:"require_mfa_for" env:"FHIRGATE_LOGIN_REQUIRE_MFA_FOR" doc:"roles that must sign in with a second factor (TOTP), e.g. [clinician, admin]"`
	// MFAEnrolment says who creates a user's first TOTP key: "self" (the
	// signed-in user, on the enrol page) or "provisioned" (an administrator,
	// with fhirgate users mfa-provision, handing it over out of band).
	MFAEnrolment string `yaml:"mfa_enrolment" env:"FHIRGATE_LOGIN_MFA_ENROLMENT" doc:"who creates a user's first TOTP key: self (the user, on the enrol page, after the password) or provisioned (an administrator, fhirgate users mfa-provision, out of band)"`
}

// RoleList is a list of roles kept as space-separated text (so config
// structs stay comparable); YAML accepts a sequence or a string.
type RoleList string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *RoleList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		*l = RoleList(strings.Join(items, " "))
		return nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = RoleList(strings.Join(strings.Fields(strings.ReplaceAll(s, ",", " ")), " "))
	return nil
}

// Roles returns the listed roles.
func (l RoleList) Roles() []string { return strings.Fields(strings.ReplaceAll(string(l), ",", " ")) }

// Roles holds, per user role, the scopes a user of that role may grant.
type Roles struct {
	Patient   string `yaml:"patient" env:"FHIRGATE_ROLES_PATIENT" doc:"scopes a patient user may grant"`
	Clinician string `yaml:"clinician" env:"FHIRGATE_ROLES_CLINICIAN" doc:"scopes a clinician user may grant"`
	Admin     string `yaml:"admin" env:"FHIRGATE_ROLES_ADMIN" doc:"scopes an admin user may grant"`
}

// Log configures logging.
type Log struct {
	Level string `yaml:"level" env:"FHIRGATE_LOG_LEVEL" doc:"debug, info, warn or error"`
}

// Defaults.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultDataDir         = "./data"
	DefaultDriver          = "sqlite"
	DefaultAccessTokenTTL  = 15 * time.Minute
	MaxAccessTokenTTL      = 60 * time.Minute
	DefaultIDTokenTTL      = 5 * time.Minute
	MaxIDTokenTTL          = 60 * time.Minute
	DefaultRefreshIdle     = 720 * time.Hour
	DefaultRefreshAbsolute = 2160 * time.Hour
	DefaultCodeTTL         = 60 * time.Second
	MaxCodeTTL             = 60 * time.Second
	DefaultMaxFailures     = 5
	DefaultLockout         = 15 * time.Minute
	DefaultLogLevel        = "info"
	// DefaultBackendAccessTokenTTL: SMART Backend Services tokens live five minutes.
	DefaultBackendAccessTokenTTL = 5 * time.Minute
	DefaultPARTTL                = 60 * time.Second
	MaxPARTTL                    = 10 * time.Minute
	DefaultJWKSTimeout           = 5 * time.Second
	DefaultJWKSMaxBytes          = 64 << 10
	DefaultJWKSCacheTTL          = time.Hour
	DefaultClientCacheTTL        = 2 * time.Second
	// DefaultPatientScopes: a patient user may share read access to their own record.
	DefaultPatientScopes = "openid fhirUser profile launch launch/patient offline_access online_access patient/*.rs"
	// DefaultClinicianScopes: a clinician may grant full patient- and user-level access.
	DefaultClinicianScopes = "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access patient/*.cruds user/*.cruds"
	// DefaultAdminScopes equals the clinician default.
	DefaultAdminScopes = DefaultClinicianScopes
)

// Default returns a Config holding every default (issuer and fhir_base are
// derived later, in Finish, from the final addr and issuer).
func Default() *Config {
	return &Config{
		Addr:    DefaultAddr,
		DataDir: DefaultDataDir,
		Storage: Storage{Driver: DefaultDriver},
		Tokens: Tokens{
			AccessTokenTTL:     DefaultAccessTokenTTL,
			IDTokenTTL:         DefaultIDTokenTTL,
			RefreshIdle:        DefaultRefreshIdle,
			RefreshAbsolute:    DefaultRefreshAbsolute,
			CodeTTL:            DefaultCodeTTL,
			RefreshRetryWindow: DefaultRefreshRetryWindow,

			BackendAccessTokenTTL: DefaultBackendAccessTokenTTL,
		},
		PAR:        PAR{TTL: DefaultPARTTL},
		ClientAuth: ClientAuth{JWKSTimeout: DefaultJWKSTimeout, JWKSMaxBytes: DefaultJWKSMaxBytes, JWKSCacheTTL: DefaultJWKSCacheTTL, CacheTTL: DefaultClientCacheTTL},
		Login:      Login{MaxFailures: DefaultMaxFailures, Lockout: DefaultLockout, MFAEnrolment: "self"},
		Roles: Roles{
			Patient:   DefaultPatientScopes,
			Clinician: DefaultClinicianScopes,
			Admin:     DefaultAdminScopes,
		},
		Log:        Log{Level: DefaultLogLevel},
		Gateway:    Gateway{UpstreamTimeout: DefaultUpstreamTimeout},
		RateLimit:  DefaultRateLimit(),
		Anomaly:    DefaultAnomaly(),
		Audit:      defaultAudit(),
		Revocation: Revocation{PollInterval: DefaultRevocationPoll, MaxStaleness: DefaultRevocationStaleness},
		DPoP:       DPoP{IATWindow: DefaultDPoPIATWindow},
		Replay:     Replay{Backend: DefaultReplayBackend, MaxEntries: DefaultReplayMaxEntries},
		Admin:      Admin{PublicConsole: true},
	}
}

// LoadOptions says where a configuration comes from.
type LoadOptions struct {
	// File is a YAML file; empty means none.
	File string
	// LookupEnv reads the environment (os.LookupEnv when nil).
	LookupEnv func(string) (string, bool)
	// Overrides are key=value settings applied last (command-line flags),
	// keyed by YAML path such as "addr" or "tokens.access_token_ttl".
	Overrides map[string]string
}

// Load builds a Config: defaults, then the file, then the environment, then
// the overrides; then derived defaults (Finish) and Validate. The returned
// error names every problem found, with its key.
func Load(opts LoadOptions) (*Config, error) {
	c := Default()
	if opts.File != "" {
		data, err := os.ReadFile(opts.File)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := c.decodeYAML(data); err != nil {
			return nil, fmt.Errorf("config %s: %w", opts.File, err)
		}
	}
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var problems Problems
	for _, f := range fields(c) {
		if v, ok := lookup(f.Env); ok {
			if err := setValue(f.value, v); err != nil {
				problems = append(problems, Problem{Key: f.Key, Message: fmt.Sprintf("%s: %v", f.Env, err)})
			}
		}
	}
	keys := make([]string, 0, len(opts.Overrides))
	for k := range opts.Overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := c.Set(k, opts.Overrides[k]); err != nil {
			problems = append(problems, Problem{Key: k, Message: err.Error()})
		}
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	c.Finish()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeYAML reads data over c. Unknown keys are an error naming the key.
func (c *Config) decodeYAML(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var problems Problems
	if len(root.Content) == 1 {
		checkKeys(root.Content[0], reflect.TypeOf(Config{}), "", &problems)
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// checkKeys walks a mapping node against a struct type and reports unknown
// keys by their full path, so the message names the key.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string, problems *Problems) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := prefix + k.Value
		sf, ok := fieldByYAML(t, k.Value)
		if !ok {
			*problems = append(*problems, Problem{Key: path, Message: fmt.Sprintf("unknown key (line %d)", k.Line)})
			continue
		}
		if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Duration(0)) {
			if v.Kind != yaml.MappingNode && !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
				*problems = append(*problems, Problem{Key: path, Message: fmt.Sprintf("must be a mapping (line %d)", v.Line)})
				continue
			}
			checkKeys(v, sf.Type, path+".", problems)
		}
	}
}

func fieldByYAML(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.IsExported() && yamlName(sf) == name {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

func yamlName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	return name
}

// Field describes one configuration key.
type Field struct {
	Key     string // YAML path, e.g. "tokens.access_token_ttl"
	Env     string // environment variable
	Doc     string // one-line description
	Secret  bool   // never printed
	Default string // default as text ("" when none or derived)
	value   reflect.Value
}

// Fields lists every configuration key of c in declaration order, with the
// defaults of Default().
func Fields() []Field {
	fs := fields(Default())
	for i := range fs {
		fs[i].Default = format(fs[i].value)
	}
	return fs
}

func fields(c *Config) []Field {
	var out []Field
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() || sf.Type.Kind() == reflect.Slice {
				continue // lists (upstreams) come from YAML only
			}
			key := prefix + yamlName(sf)
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Duration(0)) {
				walk(v.Field(i), key+".")
				continue
			}
			out = append(out, Field{
				Key: key, Env: sf.Tag.Get("env"), Doc: sf.Tag.Get("doc"),
				Secret: sf.Tag.Get("secret") == "true", value: v.Field(i),
			})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// Set assigns the key (a YAML path such as "tokens.code_ttl") from text, as
// an environment variable or a command-line flag would.
func (c *Config) Set(key, value string) error {
	for _, f := range fields(c) {
		if f.Key == key {
			return setValue(f.value, value)
		}
	}
	return fmt.Errorf("%w: unknown key", ErrInvalid)
}

func setValue(v reflect.Value, s string) error {
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%w: not a duration like 15m or 60s: %q", ErrInvalid, s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%w: not a boolean: %q", ErrInvalid, s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%w: not an integer: %q", ErrInvalid, s)
		}
		v.SetInt(int64(n))
	default:
		return fmt.Errorf("%w: unsupported field type %s", ErrInvalid, v.Type())
	}
	return nil
}

func format(v reflect.Value) string {
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		return formatDuration(time.Duration(v.Int()))
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case v.Kind() == reflect.Int:
		return strconv.Itoa(int(v.Int()))
	default:
		return v.String()
	}
}

// formatDuration prints 15m rather than 15m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Finish fills the derived defaults: issuer from addr (https when TLS is
// configured) and fhir_base from issuer. A trailing "/" on fhir_base is
// removed (SMART discovery lives at {fhir_base}/.well-known/...).
func (c *Config) Finish() {
	if c.Issuer == "" {
		c.issuerDerived = true
	}
	if c.FHIRBase == "" {
		c.fhirBaseDerived = true
	}
	c.derive()
	if len(c.FHIRBase) > 1 {
		c.FHIRBase = strings.TrimRight(c.FHIRBase, "/")
	}
}

func (c *Config) derive() {
	if c.issuerDerived {
		c.Issuer = ""
		if host, _, err := net.SplitHostPort(c.Addr); err == nil && host != "" && !isUnspecified(host) {
			scheme := "http"
			if c.TLSEnabled() {
				scheme = "https"
			}
			c.Issuer = scheme + "://" + c.Addr
		}
	}
	if c.fhirBaseDerived {
		c.FHIRBase = ""
		if c.Issuer != "" {
			c.FHIRBase = strings.TrimRight(c.Issuer, "/") + "/fhir"
		}
	}
}

// SetListenAddr tells the configuration the address the server actually
// listens on (it differs from addr when addr's port is 0). Issuer and
// fhir_base that were derived from addr are derived again from it.
func (c *Config) SetListenAddr(actual string) {
	c.Addr = actual
	c.derive()
}

// IssuerDerived reports whether issuer was derived from addr rather than set.
func (c *Config) IssuerDerived() bool { return c.issuerDerived }

// TLSEnabled reports whether a certificate and key are configured.
func (c *Config) TLSEnabled() bool { return c.TLS.CertFile != "" && c.TLS.KeyFile != "" }

// ListenHost returns the host part of addr.
func (c *Config) ListenHost() string {
	host, _, _ := net.SplitHostPort(c.Addr)
	return host
}

// ListensOnLoopback reports whether addr names a loopback interface.
func (c *Config) ListensOnLoopback() bool { return isLoopback(c.ListenHost()) }

// IssuerIsLoopback reports whether the issuer's host is loopback.
func (c *Config) IssuerIsLoopback() bool {
	u, err := url.Parse(c.Issuer)
	return err == nil && isLoopback(u.Hostname())
}

// KEK returns the key-encryption key: the decoded keys.kek, or nil when
// keys.kek is empty (the caller then uses the development KEK and warns).
func (c *Config) KEK() ([]byte, error) {
	if c.Keys.KEK == "" {
		return nil, nil
	}
	return decodeKEK(c.Keys.KEK)
}

func decodeKEK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("%w: must decode to 32 bytes, got %d", ErrInvalid, len(b))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: not base64", ErrInvalid)
}

// SQLitePath is the SQLite database file under data_dir.
func (c *Config) SQLitePath() string {
	return strings.TrimRight(c.DataDir, "/") + "/fhirgate.db"
}

func isUnspecified(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ErrInvalid marks every configuration error; test with errors.Is.
var ErrInvalid = errors.New("invalid configuration")
