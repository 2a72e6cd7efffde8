package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// chromiumPath is Debian's Chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// requiredEnv, when set (CI sets it), turns a missing browser, node or
// node_modules from a skip into a failure, so CI cannot pass by skipping.
const requiredEnv = "FHIRGATE_E2E_REQUIRED"

// pageWait bounds each wait for a page or a browser step (generous: CI runs
// other packages' race-enabled tests on the same two cores).
const pageWait = 30 * time.Second

// fastPW keeps argon2id cheap in tests.
var fastPW = password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

// need skips (or, under FHIRGATE_E2E_REQUIRED, fails) when ok is false.
func need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := "e2e: " + fmt.Sprintf(format, args...)
	if os.Getenv(requiredEnv) != "" {
		t.Fatalf("%s (%s is set, so this is a failure)", msg, requiredEnv)
	}
	t.Skip(msg)
}

func needChromium(t testing.TB) {
	t.Helper()
	_, err := os.Stat(chromiumPath)
	need(t, err == nil, "%s is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)", chromiumPath)
}

// needNode checks for node and e2e/node_modules/<pkg>.
func needNode(t testing.TB, pkgs ...string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	need(t, err == nil, "node is missing: install Node.js 20+ (.ci/run checks for it)")
	out, err := exec.Command(node, "-p", "process.versions.node.split('.')[0]").Output()
	major, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	need(t, err == nil && major >= 20, "node %s is too old: openid-client 6 needs Node.js 20+ (%v)", strings.TrimSpace(string(out)), err)
	for _, p := range pkgs {
		_, err := os.Stat(filepath.Join("node_modules", p, "package.json"))
		need(t, err == nil, "e2e/node_modules/%s is missing: run `npm ci` in e2e/ (.ci/run does)", p)
	}
	return node
}

// artifactDir is test-artifacts/<TestName> at the repository root.
func artifactDir(t testing.TB) string {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	dir := filepath.Join("..", "test-artifacts", name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Demo accounts (passwords are fixed: the server lives only as long as a test).
const (
	patientUser     = "patient"
	patientPassword = "patient-password-1"
	clinicianUser   = "clinician"
	clinicianPass   = "clinician-password-1"
	adminUser       = "admin"
	adminPassword   = "admin-password-1"
	demoPatientN    = 1 // the patient user's own record is demoehr.PatientID(1)
)

// server is fhirgate (authorization server + gateway) in front of the demo
// EHR, seeded like `fhirgate demo`, listening on 127.0.0.1.
type server struct {
	app      *app.App
	ehr      *demoehr.Handler
	issuer   string
	fhirBase string
	store    storage.Store
}

// startServer starts the demo EHR and fhirgate in-process, the way
// `fhirgate demo` does, with the config overrides given.
func startServer(t testing.TB, overrides map[string]string) *server {
	t.Helper()
	ctx := context.Background()
	ehr, err := demoehr.New(demoehr.Options{Username: "fhirgate-gateway", Password: "ehr-secret-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	t.Cleanup(ehrSrv.Close)
	ov := map[string]string{
		"addr": "127.0.0.1:0", "data_dir": t.TempDir(),
		"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:fhirgate-gateway:ehr-secret-e2e",
	}
	for k, v := range overrides {
		ov[k] = v
	}
	cfg, err := config.Load(config.LoadOptions{LookupEnv: func(string) (string, bool) { return "", false }, Overrides: ov})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(sctx); err != nil {
			t.Error(err)
		}
	})
	s := &server{app: a, ehr: ehr, issuer: a.Issuer(), fhirBase: a.FHIRBase(), store: a.Store()}
	for _, p := range ehr.Store().Patients() {
		if err := app.AddPatient(ctx, s.store, storage.Patient{ID: p.ID, Name: p.Name, BirthDate: p.BirthDate}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []app.NewUser{
		{Username: patientUser, Password: patientPassword, Role: storage.RolePatient, FHIRUser: "Patient/" + demoehr.PatientID(demoPatientN)},
		{Username: clinicianUser, Password: clinicianPass, Role: storage.RoleClinician, FHIRUser: "Practitioner/pr-01"},
		{Username: adminUser, Password: adminPassword, Role: storage.RoleAdmin},
	} {
		if _, err := app.CreateUser(ctx, s.store, u, fastPW, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// client registers a client the way `fhirgate clients create` does and
// returns its id and secret ("" for public clients).
func (s *server) client(t testing.TB, m clientreg.Metadata) (string, string) {
	t.Helper()
	c, sec, err := app.CreateClient(context.Background(), s.store, m, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, sec
}

// browser is one headless Chromium with a fresh profile.
type browser struct {
	t   testing.TB
	ctx context.Context // the first tab
	dir string          // screenshots
	n   int
	// shots maps a screenshot name to the file last saved under it.
	shots map[string]string
	mu    sync.Mutex
	log   strings.Builder // console and exceptions of the pages
}

// newBrowser starts Chromium with the flags this machine needs (no
// background networking: the network is closed) and a fresh user data dir.
func newBrowser(t testing.TB) *browser {
	t.Helper()
	needChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{t: t, dir: artifactDir(t), shots: map[string]string{}}
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; its context must not carry a
	// deadline (that would end the browser), so a watchdog bounds it.
	started := make(chan struct{})
	go func() {
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			cancel()
		}
	}()
	_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void]("1"))
	close(started)
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	b.ctx = ctx
	// Keep the pages' console output and exceptions for failure reports.
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			fmt.Fprintf(&b.log, "  %s\n", m.String())
			b.mu.Unlock()
		}
	}()
	return b
}

// Logs returns what the pages printed.
func (b *browser) Logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// do runs the actions with a deadline, failing the test with the page's
// location and console on error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := b.try(pageWait, steps...); err != nil {
		b.fail(what, err)
	}
}

func (b *browser) try(d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	b.shot("failure")
	loc, _ := b.location()
	b.t.Fatalf("%s: %v\nlocation: %s\npage console:\n%s", what, err, loc, b.Logs())
}

func (b *browser) location() (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Location())
}

// eval evaluates a JavaScript expression on the current page.
func eval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// waitJS polls expr (across navigations) until it is truthy and returns
// its value decoded into T.
func waitJS[T any](b *browser, what, expr string, d time.Duration) T {
	b.t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		ok, err := eval[bool](b, "!!("+expr+")")
		if err == nil && ok {
			v, err := eval[T](b, expr)
			if err == nil {
				return v
			}
			last = err
		} else if err != nil {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last == nil {
		last = errors.New("timed out")
	}
	b.fail("waiting for "+what, last)
	var zero T
	return zero
}

// waitPath waits until the page's URL path ends with suffix and the
// document has loaded.
func (b *browser) waitPath(suffix string) string {
	b.t.Helper()
	return waitJS[string](b, "a page at *"+suffix,
		fmt.Sprintf(`document.readyState === "complete" && location.pathname.endsWith(%q) && location.href`, suffix), pageWait)
}

// shot saves a PNG of the viewport as NN-name.png.
func (b *browser) shot(name string) string {
	b.t.Helper()
	return b.capture(name, chromedp.CaptureScreenshot())
}

// fullShot saves a PNG of the whole page as NN-name.png.
func (b *browser) fullShot(name string) string {
	b.t.Helper()
	return b.capture(name, chromedp.FullScreenshot(100))
}

func (b *browser) capture(name string, a chromedp.Action[[]byte]) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.n++
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
	b.shots[name] = p
	return p
}

// text returns the visible text of the page body.
func (b *browser) text() string {
	s, _ := eval[string](b, "document.body ? document.body.innerText : ''")
	return s
}

// updateDocsEnv, when set, makes TestFHIRClientStandalonePatientLaunch copy
// its login and consent screenshots to docs/img for the README.
const updateDocsEnv = "FHIRGATE_E2E_UPDATE_DOCS"

// copyToDocs copies the named screenshots to docs/img/<name>.png.
func (b *browser) copyToDocs(names ...string) {
	b.t.Helper()
	if os.Getenv(updateDocsEnv) == "" {
		return
	}
	for _, n := range names {
		data, err := os.ReadFile(b.shots[n])
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", n, err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "img", n+".png"), data, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// waitLogin waits for fhirgate's sign-in page.
func (b *browser) waitLogin(s *server) {
	b.t.Helper()
	waitJS[bool](b, "the sign-in page", fmt.Sprintf(`location.href.startsWith(%q) && !!document.querySelector('input[name="password"]')`, s.issuer), pageWait)
}

// login fills the sign-in form and submits it.
func (b *browser) login(username, pw string) {
	b.t.Helper()
	b.do("sign in as "+username,
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
		chromedp.Clear(chromedp.CSS(`input[name="username"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), username),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), pw),
	)
	b.shot("login")
	b.do("submit the sign-in form", chromedp.Click(chromedp.CSS(`form:has(input[name="password"]) button[type="submit"]`)))
}

// consent waits for the consent page, unchecks the scopes given, and
// approves.
func (b *browser) consent(uncheck ...string) {
	b.t.Helper()
	b.do("consent page", chromedp.WaitVisible(chromedp.CSS(`button[name="decision"][value="approve"]`)))
	for _, s := range uncheck {
		sel := chromedp.CSS(fmt.Sprintf(`input[type="checkbox"][name="scope"][value=%q]`, s))
		b.do("uncheck "+s, chromedp.WaitVisible(sel), chromedp.Click(sel))
		if on, err := eval[bool](b, fmt.Sprintf(`document.querySelector('input[name="scope"][value=%q]').checked`, s)); err != nil || on {
			b.fail("uncheck "+s, fmt.Errorf("still checked (%v)", err))
		}
	}
	b.fullShot("consent")
	b.do("approve", chromedp.Click(chromedp.CSS(`button[name="decision"][value="approve"]`)))
}

// serveFiles serves dir (and extra files by URL path) on 127.0.0.1.
func serveFiles(t testing.TB, dir string, extra map[string]string, dynamic map[string]http.HandlerFunc) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for p, file := range extra {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			http.ServeFile(w, r, file)
		})
	}
	for p, h := range dynamic {
		mux.HandleFunc(p, h)
	}
	mux.Handle("GET /", http.FileServer(http.Dir(dir)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// readAll reads and closes a response body.
func readAll(t testing.TB, r io.ReadCloser) string {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
