package main

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/devcerts"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

// fastPW keeps argon2id cheap in tests; the binary uses password.Default.
var fastPW = password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	stdout, stderr string
	code           int
}

func testEnv(vars map[string]string, stdin string, out, errOut *syncBuffer) *env {
	return &env{
		stdin: strings.NewReader(stdin), stdout: out, stderr: errOut,
		lookupEnv:      func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:            time.Now,
		passwordParams: fastPW,
	}
}

// cli runs the command line in-process.
func cli(t *testing.T, vars map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	code := run(context.Background(), args, testEnv(vars, stdin, &out, &errOut))
	return result{out.String(), errOut.String(), code}
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	r := cli(t, nil, "", args...)
	if r.code != 0 {
		t.Fatalf("fhirgate %s: exit %d\nstderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return v
}

func TestUsersCommands(t *testing.T) {
	dir := t.TempDir()
	// Password by flag.
	u := decode[userJSON](t, mustCLI(t, "users", "create", "--data-dir", dir, "--username", "amy", "--password", "correct horse",
		"--role", "patient", "--fhir-user", "Patient/123", "--json"))
	if u.ID == "" || u.Username != "amy" || u.Role != "patient" || u.FHIRUser != "Patient/123" {
		t.Fatalf("user %+v", u)
	}
	// Password from FHIRGATE_PASSWORD.
	r := cli(t, map[string]string{"FHIRGATE_PASSWORD": "from the env"}, "", "users", "create", "--data-dir", dir,
		"--username", "doc", "--role", "clinician", "--fhir-user", "Practitioner/9", "--json")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	// Password from stdin.
	r = cli(t, nil, "from stdin!\n", "users", "create", "--data-dir", dir, "--username", "root", "--role", "admin")
	if r.code != 0 || !strings.Contains(r.stdout, "created user root") {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	list := decode[[]userJSON](t, mustCLI(t, "users", "list", "--data-dir", dir, "--json"))
	if len(list) != 3 {
		t.Fatalf("list %+v", list)
	}
	if out := mustCLI(t, "users", "list", "--data-dir", dir); !strings.Contains(out, "Practitioner/9") {
		t.Fatalf("table: %s", out)
	}
	// Refusals: taken username, bad role, patient without fhir-user, short password, no password.
	for _, tc := range []struct {
		args   []string
		stdin  string
		expect string
	}{
		{[]string{"--username", "amy", "--password", "another pw", "--role", "patient", "--fhir-user", "Patient/1"}, "", "taken"},
		{[]string{"--username", "x", "--password", "another pw", "--role", "superuser"}, "", "role"},
		{[]string{"--username", "x", "--password", "another pw", "--role", "patient"}, "", "fhir-user"},
		{[]string{"--username", "x", "--password", "another pw", "--role", "patient", "--fhir-user", "Practitioner/1"}, "", "Patient reference"},
		{[]string{"--username", "x", "--password", "short", "--role", "admin"}, "", "at least 8"},
		{[]string{"--username", "x", "--role", "admin"}, "", "no password"},
		{[]string{"--password", "another pw", "--role", "admin"}, "", "username"},
	} {
		r := cli(t, nil, tc.stdin, append([]string{"users", "create", "--data-dir", dir}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.expect) {
			t.Errorf("%v: exit %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.expect)
		}
	}
	d := decode[map[string]string](t, mustCLI(t, "users", "delete", "--data-dir", dir, "--username", "doc", "--json"))
	if d["deleted"] != "doc" {
		t.Fatal(d)
	}
	if r := cli(t, nil, "", "users", "delete", "--data-dir", dir, "--username", "doc"); r.code != 1 || !strings.Contains(r.stderr, "no user") {
		t.Fatalf("second delete: %+v", r)
	}
}

func TestClientsCommands(t *testing.T) {
	dir := t.TempDir()
	pub := decode[clientJSON](t, mustCLI(t, "clients", "create", "--data-dir", dir, "--name", "Growth Chart",
		"--redirect-uri", "https://app.example.org/cb", "--redirect-uri", "http://127.0.0.1:9999/cb",
		"--scope", "openid fhirUser launch/patient   patient/*.rs", "--public", "--launch-uri", "https://app.example.org/launch",
		"--logo-uri", "https://app.example.org/logo.png", "--json"))
	if pub.ClientID == "" || pub.ClientSecret != "" || pub.TokenEndpointAuthMethod != "none" || len(pub.RedirectURIs) != 2 ||
		pub.LaunchURI != "https://app.example.org/launch" || pub.Scope != "openid fhirUser launch/patient patient/*.rs" {
		t.Fatalf("public client %+v", pub)
	}
	for _, m := range []string{"client_secret_basic", "client_secret_post"} {
		c := decode[clientJSON](t, mustCLI(t, "clients", "create", "--data-dir", dir, "--name", "Conf",
			"--redirect-uri", "https://conf.example.org/cb", "--scope", "openid launch patient/*.rs", "--auth-method", m, "--json"))
		if c.ClientSecret == "" || len(c.ClientSecret) < 43 || c.TokenEndpointAuthMethod != m {
			t.Fatalf("%s: %+v", m, c)
		}
	}
	// The --json output carries exactly the stable keys scripts read.
	raw := decode[map[string]any](t, mustCLI(t, "clients", "create", "--data-dir", dir, "--redirect-uri", "https://x.example.org/cb", "--scope", "openid", "--json"))
	if _, ok := raw["client_id"]; !ok {
		t.Fatal(raw)
	}
	if _, ok := raw["client_secret"]; !ok {
		t.Fatal("default auth method must be a secret method", raw)
	}
	// Refusals.
	for _, tc := range []struct {
		args   []string
		expect string
	}{
		{[]string{"--redirect-uri", "http://app.example.org/cb", "--public", "--scope", "openid"}, "invalid_redirect_uri"},
		{[]string{"--redirect-uri", "https://app.example.org/cb#frag", "--public", "--scope", "openid"}, "invalid_redirect_uri"},
		{[]string{"--redirect-uri", "https://*.example.org/cb", "--public", "--scope", "openid"}, "invalid_redirect_uri"},
		{[]string{"--public", "--scope", "openid"}, "redirect"},
		{[]string{"--redirect-uri", "https://a.example.org/cb", "--public", "--auth-method", "client_secret_post"}, "exclude"},
		{[]string{"--redirect-uri", "https://a.example.org/cb", "--auth-method", "password"}, "invalid_client_metadata"},
		{[]string{"--redirect-uri", "https://a.example.org/cb", "--public", "--scope", "patient/Observation.xyz"}, "scope"},
	} {
		r := cli(t, nil, "", append([]string{"clients", "create", "--data-dir", dir}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.expect) {
			t.Errorf("%v: exit %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.expect)
		}
	}
	list := decode[[]clientJSON](t, mustCLI(t, "clients", "list", "--data-dir", dir, "--json"))
	if len(list) != 4 {
		t.Fatalf("list: %d", len(list))
	}
	for _, c := range list {
		if c.ClientSecret != "" {
			t.Fatal("list must never print a secret")
		}
	}
	show := decode[clientJSON](t, mustCLI(t, "clients", "show", "--data-dir", dir, pub.ClientID, "--json"))
	show2 := decode[clientJSON](t, mustCLI(t, "clients", "show", "--data-dir", dir, "--client-id", pub.ClientID, "--json"))
	if show.ClientID != pub.ClientID || show2.ClientName != "Growth Chart" || show.ClientSecret != "" {
		t.Fatalf("show %+v %+v", show, show2)
	}
	if out := mustCLI(t, "clients", "show", "--data-dir", dir, pub.ClientID); !strings.Contains(out, "Growth Chart") {
		t.Fatal(out)
	}
	mustCLI(t, "clients", "delete", "--data-dir", dir, pub.ClientID)
	if r := cli(t, nil, "", "clients", "show", "--data-dir", dir, "--client-id", pub.ClientID); r.code != 1 || !strings.Contains(r.stderr, "no client") {
		t.Fatalf("%+v", r)
	}
	if r := cli(t, nil, "", "clients", "delete", "--data-dir", dir, "--client-id", pub.ClientID, "--json"); r.code != 1 {
		t.Fatalf("%+v", r)
	}

	tok := decode[map[string]string](t, mustCLI(t, "clients", "registration-token", "--data-dir", dir, "--ttl", "1h", "--json"))
	if len(tok["registration_token"]) < 43 || tok["expires_at"] == "" {
		t.Fatal(tok)
	}
	if r := cli(t, nil, "", "clients", "registration-token", "--data-dir", dir, "--ttl", "-1h"); r.code != 1 {
		t.Fatalf("negative ttl accepted: %+v", r)
	}
}

func TestLaunchKeysPatientsCertsVersion(t *testing.T) {
	dir := t.TempDir()
	l := decode[map[string]string](t, mustCLI(t, "launch", "create", "--data-dir", dir, "--patient", "Patient/123", "--encounter", "Encounter/9", "--json"))
	if len(l["launch"]) < 43 {
		t.Fatal(l)
	}
	for _, bad := range [][]string{{"--patient", "Observation/1"}, {"--patient", "Patient/123", "--encounter", "Patient/1"}, {}} {
		if r := cli(t, nil, "", append([]string{"launch", "create", "--data-dir", dir}, bad...)...); r.code != 1 {
			t.Errorf("%v accepted", bad)
		}
	}

	ks := decode[[]keyJSON](t, mustCLI(t, "keys", "list", "--data-dir", dir, "--json"))
	if len(ks) != 2 {
		t.Fatalf("keys %+v", ks)
	}
	rot := decode[map[string][]string](t, mustCLI(t, "keys", "rotate", "--data-dir", dir, "--json"))
	if len(rot["kids"]) != 2 {
		t.Fatal(rot)
	}
	ks = decode[[]keyJSON](t, mustCLI(t, "keys", "list", "--data-dir", dir, "--json"))
	active := 0
	for _, k := range ks {
		if k.Active {
			active++
		}
	}
	if len(ks) != 4 || active != 2 {
		t.Fatalf("after rotate: %+v", ks)
	}
	// A wrong KEK cannot open the keys.
	if r := cli(t, map[string]string{"FHIRGATE_KEK": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, "", "keys", "list", "--data-dir", dir); r.code != 1 {
		t.Fatalf("wrong KEK accepted: %+v", r)
	}

	p := decode[patientJSON](t, mustCLI(t, "patients", "add", "--data-dir", dir, "--id", "123", "--name", "Amy Shaw", "--birth-date", "1987-02-20", "--json"))
	if p.ID != "123" || p.Name != "Amy Shaw" || p.BirthDate != "1987-02-20" {
		t.Fatal(p)
	}
	mustCLI(t, "patients", "add", "--data-dir", dir, "--id", "Patient/456", "--name", "Bob Jones")
	ps := decode[[]patientJSON](t, mustCLI(t, "patients", "list", "--data-dir", dir, "--json"))
	if len(ps) != 2 {
		t.Fatal(ps)
	}
	ps = decode[[]patientJSON](t, mustCLI(t, "patients", "list", "--data-dir", dir, "--name", "shaw", "--json"))
	if len(ps) != 1 || ps[0].ID != "123" {
		t.Fatal(ps)
	}
	for _, bad := range [][]string{{"--id", "a b", "--name", "X"}, {"--id", "1", "--name", "X", "--birth-date", "20/02/1987"}} {
		if r := cli(t, nil, "", append([]string{"patients", "add", "--data-dir", dir}, bad...)...); r.code != 1 {
			t.Errorf("%v accepted", bad)
		}
	}

	certDir := filepath.Join(t.TempDir(), "certs")
	c := decode[map[string]any](t, mustCLI(t, "certs", "dev", "--out", certDir, "--host", "localhost", "--host", "127.0.0.1", "--json"))
	for _, k := range []string{"ca", "cert", "key"} {
		if _, err := os.Stat(c[k].(string)); err != nil {
			t.Fatal(k, err)
		}
	}
	if r := cli(t, nil, "", "certs", "dev", "--out", certDir); r.code != 1 {
		t.Fatal("certs dev must refuse to overwrite without --force")
	}

	if out := mustCLI(t, "version"); !strings.HasPrefix(out, "fhirgate ") {
		t.Fatal(out)
	}
	if v := decode[map[string]string](t, mustCLI(t, "version", "--json")); v["version"] == "" {
		t.Fatal(v)
	}
	if r := cli(t, nil, "", "no-such-command"); r.code != 1 || r.stderr == "" {
		t.Fatalf("%+v", r)
	}
}

// startServe runs `fhirgate serve` in-process and waits for its ready line.
func startServe(t *testing.T, vars map[string]string, args ...string) (url string, stop func() result) {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), testEnv(vars, "", &out, &errOut)) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s := out.String(); strings.Contains(s, "\n") {
			if !strings.HasPrefix(s, "fhirgate: serving on ") {
				t.Fatalf("ready line %q", s)
			}
			url = strings.Fields(strings.TrimPrefix(s, "fhirgate: serving on "))[0]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve not ready: %s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return url, func() result {
		cancel()
		code := <-done
		return result{out.String(), errOut.String(), code}
	}
}

func TestServeWhileAdminCommandsRun(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, nil, "--data-dir", dir, "--addr", "127.0.0.1:0", "--issuer", "http://localhost:1234",
		"--fhir-base", "http://localhost:1234/fhir/r4")
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatal(url)
	}
	// The store is shared: admin commands work while serve runs.
	mustCLI(t, "users", "create", "--data-dir", dir, "--username", "amy", "--password", "correct horse", "--role", "patient", "--fhir-user", "Patient/1")
	mustCLI(t, "launch", "create", "--data-dir", dir, "--patient", "Patient/1", "--json")
	mustCLI(t, "keys", "rotate", "--data-dir", dir)
	resp, err := http.Get(url + "/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /token: %d", resp.StatusCode)
	}
	r := stop()
	if r.code != 0 {
		t.Fatalf("serve exit %d: %s", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, "\n"); n != 1 || !strings.Contains(r.stdout, "(issuer http://localhost:1234)") {
		t.Fatalf("stdout must be exactly the ready line: %q", r.stdout)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := func(body string) string {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
		key  string
	}{
		{"unknown key", nil, []string{"--config", cfgFile("adress: 127.0.0.1:1\n")}, "adress"},
		{"unknown nested key", nil, []string{"--config", cfgFile("tokens:\n  access_ttl: 5m\n")}, "tokens.access_ttl"},
		{"bad issuer URL", nil, []string{"--issuer", "ftp://x"}, "issuer"},
		{"http issuer on public host", nil, []string{"--issuer", "http://auth.example.org"}, "issuer"},
		{"fhir base with query", nil, []string{"--fhir-base", "http://127.0.0.1/fhir?x=1"}, "fhir_base"},
		{"ttl above 60m in file", nil, []string{"--config", cfgFile("tokens:\n  access_token_ttl: 61m\n")}, "tokens.access_token_ttl"},
		{"ttl above 60m in env", map[string]string{"FHIRGATE_ACCESS_TOKEN_TTL": "2h"}, nil, "tokens.access_token_ttl"},
		{"plain http on all interfaces", nil, []string{"--addr", "0.0.0.0:0", "--issuer", "https://auth.example.org"}, "addr"},
		{"missing config file", nil, []string{"--config", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.vars, "", append([]string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0"}, tc.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.key) {
				t.Fatalf("exit %d, stderr %q does not name %q", r.code, r.stderr, tc.key)
			}
			if r.stdout != "" {
				t.Fatalf("stdout %q", r.stdout)
			}
		})
	}
	// Admin commands refuse a bad config the same way.
	if r := cli(t, nil, "", "users", "list", "--config", cfgFile("bogus: 1\n")); r.code != 1 || !strings.Contains(r.stderr, "bogus") {
		t.Fatalf("%+v", r)
	}
}

func TestServeBehindProxyAndTLS(t *testing.T) {
	dir := t.TempDir()
	kek := map[string]string{"FHIRGATE_KEK": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
	// Non-loopback plain http only with the named insecure switch; it warns.
	vars := map[string]string{"FHIRGATE_INSECURE_HTTP_BEHIND_PROXY": "true", "FHIRGATE_KEK": kek["FHIRGATE_KEK"]}
	_, stop := startServe(t, vars, "--data-dir", dir, "--addr", "0.0.0.0:0", "--issuer", "https://auth.example.org")
	r := stop()
	if r.code != 0 || !strings.Contains(r.stderr, "INSECURE") {
		t.Fatalf("exit %d stderr %s", r.code, r.stderr)
	}

	certDir := filepath.Join(t.TempDir(), "certs")
	mustCLI(t, "certs", "dev", "--out", certDir)
	tlsVars := map[string]string{
		"FHIRGATE_TLS_CERT_FILE": filepath.Join(certDir, devcerts.ServerFile),
		"FHIRGATE_TLS_KEY_FILE":  filepath.Join(certDir, devcerts.ServerKeyFile),
	}
	url, stop := startServe(t, tlsVars, "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0")
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatal(url)
	}
	if r := stop(); r.code != 0 {
		t.Fatal(r.stderr)
	}
}

// TestUsersMFAProvision: the command prints a fresh key once; the user
// confirms it with a code (as on the enrol page); provisioning over the
// confirmed factor, and for an unknown user, fails.
func TestUsersMFAProvision(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "users", "create", "--data-dir", dir, "--username", "doc", "--password", "correct horse",
		"--role", "clinician", "--fhir-user", "Practitioner/9")
	out := decode[map[string]string](t, mustCLI(t, "users", "mfa-provision", "--data-dir", dir, "--username", "doc", "--json"))
	if !strings.HasPrefix(out["otpauth_uri"], "otpauth://totp/") || !strings.Contains(out["otpauth_uri"], "secret="+out["key"]) || out["username"] != "doc" {
		t.Fatalf("provision output %v", out)
	}
	again := decode[map[string]string](t, mustCLI(t, "users", "mfa-provision", "--data-dir", dir, "--username", "doc", "--json"))
	if again["key"] == out["key"] {
		t.Fatal("a second provision kept the key")
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(again["key"])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mfa.New(mfa.Options{Store: s, KEK: keys.DevKEK(), Auditor: audit.LogAuditor{Logger: slog.New(slog.DiscardHandler)},
		Enrolment: mfa.EnrolProvisioned})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.GetUserByUsername(ctx, "doc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Confirm(ctx, u.ID, mfa.Code(raw, mfa.Step(time.Now()))); err != nil {
		t.Fatalf("confirm the provisioned key: %v", err)
	}
	s.Close()
	if r := cli(t, nil, "", "users", "mfa-provision", "--data-dir", dir, "--username", "doc"); r.code != 1 || !strings.Contains(r.stderr, "already has a confirmed second factor") {
		t.Fatalf("provision over a confirmed factor: %+v", r)
	}
	if r := cli(t, nil, "", "users", "mfa-provision", "--data-dir", dir, "--username", "nobody"); r.code != 1 || !strings.Contains(r.stderr, `no user "nobody"`) {
		t.Fatalf("unknown user: %+v", r)
	}
}
