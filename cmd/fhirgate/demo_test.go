package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/demoehr"
)

// waitLines waits until out holds n lines.
func waitLines(t *testing.T, out *syncBuffer, errOut *syncBuffer, n int, done chan int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s := out.String(); strings.Count(s, "\n") >= n {
			return strings.Split(s, "\n")
		}
		select {
		case code := <-done:
			t.Fatalf("exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDemoJSON(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 2; round++ { // a second start on the same data dir re-seeds
		var out, errOut syncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"demo", "--addr", "127.0.0.1:0", "--data-dir", dir, "--json"}, testEnv(nil, "", &out, &errOut))
		}()
		lines := waitLines(t, &out, &errOut, 2, done)
		var info demoInfo
		if err := json.Unmarshal([]byte(lines[0]), &info); err != nil {
			cancel()
			t.Fatalf("first line is not JSON: %v: %q", err, lines[0])
		}
		if !strings.HasPrefix(lines[1], "fhirgate: serving on ") {
			t.Fatalf("second line %q", lines[1])
		}
		if len(info.Users) != 2 || info.Users[1].FHIRUser != "Patient/"+demoehr.PatientID(1) || info.Users[0].Password == "" ||
			info.Client.ClientID == "" || info.Patients < 20 || !strings.HasSuffix(info.FHIRBase, "/fhir") {
			t.Fatalf("info %+v", info)
		}
		// The demo SMART app (backend-for-frontend) is up on its own loopback port.
		if !strings.HasPrefix(info.App.URL, "http://127.0.0.1:") || info.App.ClientID == "" || info.App.ClientID == info.Client.ClientID {
			t.Fatalf("app %+v", info.App)
		}
		resp, err := http.Get(info.App.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `action="/login"`) || !strings.Contains(resp.Header.Get("Set-Cookie"), "HttpOnly") {
			t.Fatalf("demo app %d %s", resp.StatusCode, b)
		}
		// The gateway answers metadata from the demo EHR; data needs a token.
		resp, err = http.Get(info.FHIRBase + "/metadata")
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "oauth-uris") {
			t.Fatalf("metadata %d %s", resp.StatusCode, b)
		}
		resp, err = http.Get(info.FHIRBase + "/Patient/" + demoehr.PatientID(1))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unauthenticated read: %d", resp.StatusCode)
		}
		// The demo EHR itself refuses anything but its Basic credentials.
		resp, err = http.Get(info.DemoEHR + "/Patient/" + demoehr.PatientID(1))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("demo EHR without credentials: %d", resp.StatusCode)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("demo exit %d: %s", code, errOut.String())
		}
		// The passwords never reach the logs.
		if strings.Contains(errOut.String(), info.Users[0].Password) {
			t.Fatal("password logged")
		}
	}
}

func TestServeWithUpstream(t *testing.T) {
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ehr)
	defer srv.Close()
	url, stop := startServe(t, nil, "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--upstream", srv.URL, "--upstream-auth", "basic:gw:pw")
	resp, err := http.Get(url + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metadata through the gateway: %d", resp.StatusCode)
	}
	if r := stop(); r.code != 0 {
		t.Fatalf("serve exit %d: %s", r.code, r.stderr)
	}
	r := cli(t, nil, "", "serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--upstream", srv.URL, "--upstream-auth", "bearer:x")
	if r.code != 1 || !strings.Contains(r.stderr, "gateway.upstream_auth") {
		t.Fatalf("bad --upstream-auth: %d %s", r.code, r.stderr)
	}
}

func TestDemoAppAddrMustBeLoopback(t *testing.T) {
	r := cli(t, nil, "", "demo", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--app-addr", "0.0.0.0:0")
	if r.code != 1 || !strings.Contains(r.stderr, "loopback") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}
