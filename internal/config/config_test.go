package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fhirgate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// problemKeys returns the keys named by a validation error.
func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v is not ErrInvalid", err)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v is not a *ValidationError", err, err)
	}
	return ve.Keys()
}

func TestDefaults(t *testing.T) {
	c, err := Load(LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.Issuer != "http://127.0.0.1:8080" || c.FHIRBase != "http://127.0.0.1:8080/fhir" {
		t.Fatalf("addr/issuer/fhir_base = %q %q %q", c.Addr, c.Issuer, c.FHIRBase)
	}
	if c.DataDir != "./data" || c.Storage.Driver != "sqlite" || c.SQLitePath() != "./data/fhirgate.db" {
		t.Fatalf("data: %q %q %q", c.DataDir, c.Storage.Driver, c.SQLitePath())
	}
	if c.Tokens.AccessTokenTTL != 15*time.Minute || c.Tokens.IDTokenTTL != 5*time.Minute ||
		c.Tokens.RefreshIdle != 720*time.Hour || c.Tokens.RefreshAbsolute != 2160*time.Hour ||
		c.Tokens.CodeTTL != 60*time.Second {
		t.Fatalf("tokens: %+v", c.Tokens)
	}
	if c.Login.MaxFailures != 5 || c.Login.Lockout != 15*time.Minute || c.Log.Level != "info" {
		t.Fatalf("login/log: %+v %+v", c.Login, c.Log)
	}
	if kek, err := c.KEK(); err != nil || kek != nil {
		t.Fatalf("KEK() = %v, %v; want nil (dev KEK)", kek, err)
	}
	if !c.ListensOnLoopback() || !c.IssuerIsLoopback() || c.TLSEnabled() {
		t.Fatal("default must be loopback plain http")
	}
}

func TestFileEnvOverridePrecedence(t *testing.T) {
	p := writeFile(t, `
addr: 127.0.0.1:9000
data_dir: /tmp/from-file
tokens:
  access_token_ttl: 30m
  code_ttl: 30s
login:
  max_failures: 3
roles:
  patient: "openid patient/*.rs"
log:
  level: debug
`)
	env := envMap(map[string]string{
		"FHIRGATE_DATA_DIR":         "/tmp/from-env",
		"FHIRGATE_ACCESS_TOKEN_TTL": "20m",
		"FHIRGATE_LOG_LEVEL":        "warn",
	})
	c, err := Load(LoadOptions{File: p, LookupEnv: env, Overrides: map[string]string{"log.level": "error"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.Issuer != "http://127.0.0.1:9000" {
		t.Fatalf("addr %q issuer %q", c.Addr, c.Issuer)
	}
	if c.DataDir != "/tmp/from-env" {
		t.Fatalf("env must override the file: data_dir %q", c.DataDir)
	}
	if c.Tokens.AccessTokenTTL != 20*time.Minute || c.Tokens.CodeTTL != 30*time.Second {
		t.Fatalf("tokens %+v", c.Tokens)
	}
	if c.Log.Level != "error" {
		t.Fatalf("override must win: log.level %q", c.Log.Level)
	}
	if c.Login.MaxFailures != 3 || c.Roles.Patient != "openid patient/*.rs" {
		t.Fatalf("login %+v roles %+v", c.Login, c.Roles)
	}
}

func TestUnknownKeyNamed(t *testing.T) {
	for _, tc := range []struct{ body, key string }{
		{"adr: 127.0.0.1:1\n", "adr"},
		{"tokens:\n  acces_token_ttl: 5m\n", "tokens.acces_token_ttl"},
		{"storage:\n  driver: sqlite\n  pasword: x\n", "storage.pasword"},
	} {
		_, err := Load(LoadOptions{File: writeFile(t, tc.body), LookupEnv: noEnv})
		keys := problemKeys(t, err)
		if !slices.Contains(keys, tc.key) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v does not name %s", tc.body, err, tc.key)
		}
	}
}

func TestBadYAMLAndTypes(t *testing.T) {
	for _, body := range []string{"addr: [1,2\n", "tokens:\n  access_token_ttl: soon\n", "login:\n  max_failures: many\n", "tokens: 5\n"} {
		if _, err := Load(LoadOptions{File: writeFile(t, body), LookupEnv: noEnv}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err = %v, want ErrInvalid", body, err)
		}
	}
	if _, err := Load(LoadOptions{File: filepath.Join(t.TempDir(), "missing.yaml"), LookupEnv: noEnv}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestBadEnvNamesVariableAndKey(t *testing.T) {
	_, err := Load(LoadOptions{LookupEnv: envMap(map[string]string{"FHIRGATE_ACCESS_TOKEN_TTL": "forever", "FHIRGATE_INSECURE_HTTP_BEHIND_PROXY": "maybe"})})
	keys := problemKeys(t, err)
	if !slices.Contains(keys, "tokens.access_token_ttl") || !slices.Contains(keys, "insecure_http_behind_proxy") ||
		!strings.Contains(err.Error(), "FHIRGATE_ACCESS_TOKEN_TTL") {
		t.Fatalf("error %v", err)
	}
}

func TestValidateRefusals(t *testing.T) {
	validKEK := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // 32 bytes
	for _, tc := range []struct {
		name string
		set  map[string]string
		key  string
	}{
		{"access ttl above 60m", map[string]string{"tokens.access_token_ttl": "61m"}, "tokens.access_token_ttl"},
		{"access ttl zero", map[string]string{"tokens.access_token_ttl": "0s"}, "tokens.access_token_ttl"},
		{"code ttl above 60s", map[string]string{"tokens.code_ttl": "61s"}, "tokens.code_ttl"},
		{"id ttl above 60m", map[string]string{"tokens.id_token_ttl": "2h"}, "tokens.id_token_ttl"},
		{"refresh absolute < idle", map[string]string{"tokens.refresh_absolute": "1h"}, "tokens.refresh_absolute"},
		{"bad issuer URL", map[string]string{"issuer": "not a url"}, "issuer"},
		{"relative issuer", map[string]string{"issuer": "/auth"}, "issuer"},
		{"http issuer non-loopback", map[string]string{"issuer": "http://auth.example.org"}, "issuer"},
		{"issuer with query", map[string]string{"issuer": "https://127.0.0.1/?a=b"}, "issuer"},
		{"issuer with fragment", map[string]string{"issuer": "http://127.0.0.1:1#x"}, "issuer"},
		{"issuer trailing slash", map[string]string{"issuer": "http://127.0.0.1:1/"}, "issuer"},
		{"fhir_base ftp", map[string]string{"fhir_base": "ftp://127.0.0.1/fhir"}, "fhir_base"},
		{"fhir_base relative", map[string]string{"fhir_base": "fhir"}, "fhir_base"},
		{"fhir_base query", map[string]string{"fhir_base": "https://ehr.example.org/fhir?x=1"}, "fhir_base"},
		{"fhir_base fragment", map[string]string{"fhir_base": "https://ehr.example.org/fhir#f"}, "fhir_base"},
		{"bad driver", map[string]string{"storage.driver": "mysql"}, "storage.driver"},
		{"client cache above 30s", map[string]string{"client_auth.cache_ttl": "31s"}, "client_auth.cache_ttl"},
		{"client cache negative", map[string]string{"client_auth.cache_ttl": "-1s"}, "client_auth.cache_ttl"},
		{"postgres without dsn", map[string]string{"storage.driver": "postgres"}, "storage.dsn"},
		{"cert without key", map[string]string{"tls.cert_file": "c.pem"}, "tls.key_file"},
		{"key without cert", map[string]string{"tls.key_file": "k.pem"}, "tls.cert_file"},
		{"plain http on all interfaces", map[string]string{"addr": "0.0.0.0:8080", "issuer": "https://auth.example.org", "keys.kek": validKEK}, "addr"},
		{"plain http on public IP", map[string]string{"addr": "192.0.2.1:80", "issuer": "https://auth.example.org", "keys.kek": validKEK}, "addr"},
		{"all interfaces without issuer", map[string]string{"addr": ":8080", "insecure_http_behind_proxy": "true"}, "issuer"},
		{"bad addr", map[string]string{"addr": "localhost"}, "addr"},
		{"bad port", map[string]string{"addr": "127.0.0.1:99999"}, "addr"},
		{"dev KEK with public issuer", map[string]string{"issuer": "https://auth.example.org"}, "keys.kek"},
		{"KEK not base64", map[string]string{"keys.kek": "!!!"}, "keys.kek"},
		{"KEK too short", map[string]string{"keys.kek": "AAEC"}, "keys.kek"},
		{"max failures zero", map[string]string{"login.max_failures": "0"}, "login.max_failures"},
		{"lockout zero", map[string]string{"login.lockout": "0s"}, "login.lockout"},
		{"empty role", map[string]string{"roles.clinician": " "}, "roles.clinician"},
		{"bad log level", map[string]string{"log.level": "loud"}, "log.level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: tc.set})
			keys := problemKeys(t, err)
			if !slices.Contains(keys, tc.key) {
				t.Fatalf("error %v does not name %s", err, tc.key)
			}
		})
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	_, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{
		"tokens.access_token_ttl": "2h", "tokens.code_ttl": "5m", "log.level": "x", "fhir_base": "nope",
	}})
	keys := problemKeys(t, err)
	for _, k := range []string{"tokens.access_token_ttl", "tokens.code_ttl", "log.level", "fhir_base"} {
		if !slices.Contains(keys, k) {
			t.Errorf("missing %s in %v", k, keys)
		}
	}
}

func TestAcceptedSecureSetups(t *testing.T) {
	kek := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	// TLS on all interfaces with a public issuer and a real KEK.
	c, err := Load(LoadOptions{LookupEnv: envMap(map[string]string{"FHIRGATE_KEK": kek}), Overrides: map[string]string{
		"addr": "0.0.0.0:8443", "issuer": "https://auth.example.org", "tls.cert_file": "c.pem", "tls.key_file": "k.pem",
		"fhir_base": "https://ehr.example.org/fhir/r4/",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.KEK(); len(b) != 32 {
		t.Fatalf("KEK len %d", len(b))
	}
	if c.FHIRBase != "https://ehr.example.org/fhir/r4" {
		t.Fatalf("fhir_base trailing slash kept: %q", c.FHIRBase)
	}
	// Behind a proxy: explicit insecure switch.
	if _, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{
		"addr": "0.0.0.0:8080", "issuer": "https://auth.example.org", "insecure_http_behind_proxy": "true", "keys.kek": kek,
	}}); err != nil {
		t.Fatal(err)
	}
	// TLS derived issuer is https.
	c, err = Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{
		"addr": "localhost:8443", "tls.cert_file": "c.pem", "tls.key_file": "k.pem",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://localhost:8443" || c.FHIRBase != "https://localhost:8443/fhir" {
		t.Fatalf("issuer %q fhir_base %q", c.Issuer, c.FHIRBase)
	}
	// Postgres with a DSN and no data dir.
	if _, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{
		"storage.driver": "postgres", "storage.dsn": "postgres://x@127.0.0.1/db", "data_dir": "",
	}}); err != nil {
		t.Fatal(err)
	}
}

func TestSetListenAddrRederives(t *testing.T) {
	c, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"addr": "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetListenAddr("127.0.0.1:41234")
	if c.Issuer != "http://127.0.0.1:41234" || c.FHIRBase != "http://127.0.0.1:41234/fhir" {
		t.Fatalf("issuer %q fhir_base %q", c.Issuer, c.FHIRBase)
	}
	// An explicit issuer is never rewritten.
	c, err = Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"addr": "127.0.0.1:0", "issuer": "http://localhost:9"}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetListenAddr("127.0.0.1:41234")
	if c.Issuer != "http://localhost:9" || c.FHIRBase != "http://localhost:9/fhir" {
		t.Fatalf("issuer %q fhir_base %q", c.Issuer, c.FHIRBase)
	}
}

func TestFieldsComplete(t *testing.T) {
	seenEnv := map[string]bool{}
	for _, f := range Fields() {
		if f.Env == "" || !strings.HasPrefix(f.Env, "FHIRGATE_") {
			t.Errorf("%s: env %q", f.Key, f.Env)
		}
		if seenEnv[f.Env] {
			t.Errorf("duplicate env %s", f.Env)
		}
		seenEnv[f.Env] = true
		if f.Doc == "" {
			t.Errorf("%s: no doc", f.Key)
		}
	}
	for _, want := range []string{"FHIRGATE_ADDR", "FHIRGATE_ISSUER", "FHIRGATE_FHIR_BASE", "FHIRGATE_DATA_DIR",
		"FHIRGATE_STORAGE_DRIVER", "FHIRGATE_STORAGE_DSN", "FHIRGATE_KEK", "FHIRGATE_TLS_CERT_FILE",
		"FHIRGATE_TLS_KEY_FILE", "FHIRGATE_ACCESS_TOKEN_TTL"} {
		if !seenEnv[want] {
			t.Errorf("no field reads %s", want)
		}
	}
}

// TestReadmeDocumentsEveryKey keeps the README's configuration table honest.
func TestReadmeDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Skip("README.md not written yet")
	}
	for _, f := range Fields() {
		if !strings.Contains(string(readme), "`"+f.Key+"`") || !strings.Contains(string(readme), "`"+f.Env+"`") {
			t.Errorf("README does not document %s / %s", f.Key, f.Env)
		}
	}
}

func TestRoleScopesParsed(t *testing.T) {
	for _, bad := range []string{"patient/Observation.xyz", "openid bogus_scope"} {
		_, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"roles.patient": bad}})
		if keys := problemKeys(t, err); !slices.Contains(keys, "roles.patient") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestExampleFileLoads keeps fhirgate.example.yaml valid and equal to the defaults.
func TestExampleFileLoads(t *testing.T) {
	c, err := Load(LoadOptions{File: "../../fhirgate.example.yaml", LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != d.Addr || c.Issuer != d.Issuer || c.Tokens != d.Tokens || c.Login != d.Login || c.Roles != d.Roles || c.Log != d.Log {
		t.Fatalf("example differs from defaults:\n%+v\n%+v", c, d)
	}
}
