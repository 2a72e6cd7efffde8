package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func open(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSessionTimeouts(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m, err := New(Options{Store: store, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	value, s, err := m.Start(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(s.Hash), value) || len(s.CSRFToken) < 43 {
		t.Fatal("session stores its value or has a weak CSRF token")
	}
	// Activity within the idle timeout keeps it alive up to the absolute limit.
	for range 12 * 3 {
		c.Advance(20 * time.Minute)
		if _, err := m.Lookup(ctx, value); err != nil {
			if c.Now().Sub(s.CreatedAt) < DefaultAbsoluteTimeout {
				t.Fatalf("session ended early at %v: %v", c.Now().Sub(s.CreatedAt), err)
			}
			break
		}
		if c.Now().Sub(s.CreatedAt) >= DefaultAbsoluteTimeout {
			t.Fatal("session outlived its absolute timeout")
		}
	}
	value, _, _ = m.Start(ctx, "u1")
	c.Advance(31 * time.Minute)
	if _, err := m.Lookup(ctx, value); !errors.Is(err, ErrNoSession) {
		t.Fatalf("idle session: %v", err)
	}
	if _, err := m.Lookup(ctx, "unknown"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("unknown session: %v", err)
	}
	value, _, _ = m.Start(ctx, "u1")
	if err := m.End(ctx, value); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lookup(ctx, value); !errors.Is(err, ErrNoSession) {
		t.Fatalf("ended session: %v", err)
	}
}

func TestCheckCSRF(t *testing.T) {
	s := &storage.Session{CSRFToken: "abc"}
	if CheckCSRF(s, "abc") != nil || !errors.Is(CheckCSRF(s, "abd"), ErrCSRF) || !errors.Is(CheckCSRF(s, ""), ErrCSRF) ||
		!errors.Is(CheckCSRF(&storage.Session{}, ""), ErrCSRF) || !errors.Is(CheckCSRF(nil, "abc"), ErrCSRF) {
		t.Fatal("CheckCSRF")
	}
}

func TestCookies(t *testing.T) {
	store := open(t)
	for _, secure := range []bool{true, false} {
		m, _ := New(Options{Store: store, SecureCookies: secure})
		rec := httptest.NewRecorder()
		m.SetCookie(rec, "v")
		tok := m.LoginCSRF(rec, httptest.NewRequest("GET", "/", nil))
		cookies := rec.Result().Cookies()
		if len(cookies) != 2 {
			t.Fatalf("cookies %v", cookies)
		}
		for _, ck := range cookies {
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure != secure || ck.Path != "/" || ck.Domain != "" {
				t.Errorf("cookie %+v", ck)
			}
			if secure != strings.HasPrefix(ck.Name, "__Host-") {
				t.Errorf("cookie name %q with secure=%v", ck.Name, secure)
			}
		}
		req := httptest.NewRequest("POST", "/", nil)
		req.AddCookie(cookies[1])
		if err := m.CheckLoginCSRF(req, tok); err != nil {
			t.Errorf("login CSRF: %v", err)
		}
		if err := m.CheckLoginCSRF(req, tok+"x"); !errors.Is(err, ErrCSRF) {
			t.Error("wrong login CSRF accepted")
		}
		if err := m.CheckLoginCSRF(httptest.NewRequest("POST", "/", nil), tok); !errors.Is(err, ErrCSRF) {
			t.Error("login CSRF without cookie accepted")
		}
	}
}

func TestAuthenticator(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cheap := password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}
	hash, _ := password.Hash("right password", cheap)
	if err := store.CreateUser(ctx, &storage.User{ID: "u1", Username: "amy", PasswordHash: hash, Role: storage.RolePatient}); err != nil {
		t.Fatal(err)
	}
	rec := &audittest.Recorder{}
	dummy, _ := password.Hash("dummy password", cheap)
	a, err := NewAuthenticator(AuthenticatorOptions{Users: store, DummyHash: dummy, Auditor: rec, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	try := func(user, pw, ip string) error {
		_, err := a.Authenticate(ctx, Attempt{Username: user, Password: pw, SourceIP: ip})
		return err
	}
	if err := try("amy", "right password", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if !rec.Has(audit.ActionLogin, audit.Success) {
		t.Fatal("success not audited")
	}
	for i := 1; i <= 5; i++ {
		errKnown, errUnknown := try("amy", "nope", "10.0.0.1"), try("ghost", "nope", "10.0.0.2")
		if Message(errKnown) != Message(errUnknown) {
			t.Fatalf("attempt %d: %v vs %v", i, errKnown, errUnknown)
		}
		want := ErrInvalidCredentials
		if i == 5 {
			want = ErrLocked
		}
		if !errors.Is(errKnown, want) {
			t.Fatalf("attempt %d: %v", i, errKnown)
		}
	}
	if err := try("amy", "right password", "10.0.0.3"); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked account: %v", err)
	}
	c.Advance(15*time.Minute + time.Second)
	if err := try("amy", "right password", "10.0.0.3"); err != nil {
		t.Fatalf("after lock: %v", err)
	}
	// Audit failure on success fails closed.
	rec.Fail = errors.New("disk full")
	if err := try("amy", "right password", "10.0.0.4"); err == nil || Message(err) != "" {
		t.Fatalf("audit failure: %v", err)
	}
}

func TestThrottleIPWindow(t *testing.T) {
	th := NewThrottle(ThrottleOptions{MaxPerIP: 3, IPWindow: time.Minute})
	now := time.Unix(0, 0)
	for i := range 3 {
		if th.IPBlocked("ip", now) {
			t.Fatalf("blocked after %d", i)
		}
		th.FailIP("ip", now.Add(time.Duration(i)*time.Second))
	}
	if !th.IPBlocked("ip", now.Add(3*time.Second)) || th.IPBlocked("other", now) {
		t.Fatal("window not enforced per IP")
	}
	if th.IPBlocked("ip", now.Add(61*time.Second)) {
		t.Fatal("sliding window did not slide")
	}
}

func TestThrottleBounded(t *testing.T) {
	th := NewThrottle(ThrottleOptions{})
	now := time.Unix(0, 0)
	for i := range maxTracked + 10 {
		th.FailName(string(rune(i))+"x", now)
	}
	if len(th.names) > maxTracked {
		t.Fatalf("names table grew to %d", len(th.names))
	}
}
