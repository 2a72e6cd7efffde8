package main

import (
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func adminGet(t *testing.T, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAdminTokenAndAnomaliesCommands(t *testing.T) {
	dir := t.TempDir()
	admin := freeAddr(t)
	vars := map[string]string{"FHIRGATE_ADMIN_ADDR": admin, "FHIRGATE_ANOMALY_AUTH_FAILURES_MAX": "3"}

	r := cli(t, vars, "", "admin", "token", "--data-dir", dir, "--name", "ops")
	tok := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(tok, "fgadm_") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("admin token: %+v", r)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "admin-tokens.json"))
	if err != nil || strings.Contains(string(raw), strings.TrimPrefix(tok, "fgadm_")) {
		t.Fatalf("token file holds the token (or is missing): %v", err)
	}
	list := decode[[]map[string]string](t, mustCLI(t, "admin", "token", "list", "--data-dir", dir, "--json"))
	if len(list) != 1 || list[0]["name"] != "ops" {
		t.Fatalf("admin token list: %v", list)
	}

	base, stop := startServe(t, vars, "--data-dir", dir, "--addr", "127.0.0.1:0")
	defer stop()
	if c := adminGet(t, "http://"+admin+"/metrics", tok); c != 200 {
		t.Fatalf("admin /metrics with the CLI's token: %d", c)
	}
	// Three refused token requests naming one client raise auth_failures.
	for range 3 {
		resp, err := http.PostForm(base+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var anomalies []map[string]any
	for range 100 {
		anomalies = decode[[]map[string]any](t, mustCLICtx(t, vars, "anomalies", "list", "--data-dir", dir, "--json"))
		if len(anomalies) > 0 {
			break
		}
	}
	if len(anomalies) != 1 || anomalies[0]["rule"] != "auth_failures" {
		t.Fatalf("anomalies list: %v", anomalies)
	}
	if r := cli(t, vars, "", "anomalies", "list", "--data-dir", dir); r.code != 0 || !strings.Contains(r.stdout, "auth_failures") {
		t.Fatalf("anomalies list table: %+v", r)
	}
	// The CLI's own short-lived token is revoked after use.
	if list := decode[[]map[string]string](t, mustCLI(t, "admin", "token", "list", "--data-dir", dir, "--json")); len(list) != 1 {
		t.Fatalf("ephemeral CLI tokens left behind: %v", list)
	}
	if r := cli(t, vars, "", "anomalies", "clear", "--data-dir", dir, "no-such-id"); r.code == 0 {
		t.Fatal("clearing an unknown anomaly succeeded")
	}
	if r := cli(t, vars, "", "anomalies", "clear", "--data-dir", dir); r.code == 0 {
		t.Fatal("clear without an id or --subject succeeded")
	}
	id := anomalies[0]["id"].(string)
	if r := cli(t, vars, "", "anomalies", "clear", "--data-dir", dir, id); r.code != 0 || !strings.Contains(r.stdout, "cleared "+id) {
		t.Fatalf("anomalies clear: %+v", r)
	}
	if left := decode[[]map[string]any](t, mustCLICtx(t, vars, "anomalies", "list", "--data-dir", dir, "--json")); len(left) != 0 {
		t.Fatalf("anomaly still listed after clear: %v", left)
	}
	// Revoking the token locks it out at once.
	// An ID from before generated IDs avoided a leading '-' goes after "--"
	// (README, CLI reference): it is then looked up, not read as a flag.
	if r := cli(t, vars, "", "admin", "token", "revoke", "--data-dir", dir, "--", "-no-such-token"); r.code == 0 ||
		!strings.Contains(r.stderr, "not found") {
		t.Fatalf("revoke -- -no-such-token: %+v", r)
	}
	mustCLI(t, "admin", "token", "revoke", "--data-dir", dir, list[0]["id"])
	if c := adminGet(t, "http://"+admin+"/metrics", tok); c != 401 {
		t.Fatalf("revoked admin token: %d", c)
	}
}

func TestAnomaliesWithoutAdminListener(t *testing.T) {
	r := cli(t, nil, "", "anomalies", "list", "--data-dir", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "admin.addr") {
		t.Fatalf("anomalies list without admin.addr: %+v", r)
	}
}

// mustCLICtx runs a command with vars and fails the test on a non-zero exit.
func mustCLICtx(t *testing.T, vars map[string]string, args ...string) string {
	t.Helper()
	r := cli(t, vars, "", args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}
