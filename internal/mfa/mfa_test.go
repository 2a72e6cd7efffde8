package mfa

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

// RFC 6238 Appendix B, SHA-1 rows, last six digits.
func TestCodeRFC6238Vectors(t *testing.T) {
	key := []byte("12345678901234567890")
	for _, tc := range []struct {
		unix int64
		want string
	}{{59, "287082"}, {1111111109, "081804"}, {1111111111, "050471"}, {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"}} {
		if got := Code(key, Step(time.Unix(tc.unix, 0))); got != tc.want {
			t.Errorf("T=%d: %s, want %s", tc.unix, got, tc.want)
		}
	}
}

func TestMatchWindow(t *testing.T) {
	key := []byte("12345678901234567890")
	now := time.Unix(1111111109, 0)
	cur := Step(now)
	for _, d := range []int64{-1, 0, 1} {
		if s, ok := Match(key, Code(key, cur+d), now); !ok || s != cur+d {
			t.Errorf("step %+d not accepted", d)
		}
	}
	for _, d := range []int64{-2, 2, 10} {
		if _, ok := Match(key, Code(key, cur+d), now); ok {
			t.Errorf("step %+d accepted outside the window", d)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef", Code(key, cur) + "0"} {
		if _, ok := Match(key, bad, now); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, ok := Match(key, " "+Code(key, cur)[:3]+" "+Code(key, cur)[3:], now); !ok {
		t.Error("spaces inside a code should be ignored")
	}
}

func TestURI(t *testing.T) {
	u, err := url.Parse(URI("fhirgate", "amy shaw", []byte("12345678901234567890")))
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		t.Fatalf("%v %v", u, err)
	}
	q := u.Query()
	if q.Get("secret") != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" || q.Get("issuer") != "fhirgate" || q.Get("digits") != "6" || q.Get("period") != "30" {
		t.Fatalf("query %v", q)
	}
	png, err := QRCode(u.String())
	if err != nil || len(png) < 100 || string(png[1:4]) != "PNG" {
		t.Fatalf("qr: %v", err)
	}
}

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

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var testKEK = []byte("0123456789abcdef0123456789abcdef")

// keyOf opens the stored pending key (tests act as the authenticator app).
func keyOf(t *testing.T, svc *Service, store storage.MFA, user string) []byte {
	t.Helper()
	c, err := store.GetMFA(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	k, err := svc.seal.open(user, c.SealedSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEnrolVerifyReplayRecovery(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	c := &clock{t: time.Date(2026, 3, 1, 8, 0, 10, 0, time.UTC)}
	rec := &audittest.Recorder{}
	svc, err := New(Options{Store: store, KEK: testKEK, Auditor: rec, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := svc.Enrolled(ctx, "u1"); ok {
		t.Fatal("enrolled before enrolment")
	}
	if err := svc.Verify(ctx, "u1", "123456"); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("verify before enrolment: %v", err)
	}
	uri1, key1, err := svc.Pending(ctx, "u1", "amy")
	if err != nil {
		t.Fatal(err)
	}
	if uri2, key2, _ := svc.Pending(ctx, "u1", "amy"); uri2 != uri1 || key2 != key1 {
		t.Fatal("pending enrolment changed its key on reload")
	}
	// The stored secret is sealed, not the key.
	cred, _ := store.GetMFA(ctx, "u1")
	if strings.Contains(string(cred.SealedSecret), string(keyOf(t, svc, store, "u1"))) {
		t.Fatal("TOTP key stored in clear")
	}
	key := keyOf(t, svc, store, "u1")
	if err := svc.Verify(ctx, "u1", Code(key, Step(c.Now()))); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("unconfirmed enrolment verified: %v", err)
	}
	if _, err := svc.Confirm(ctx, "u1", "000000"); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("wrong first code: %v", err)
	}
	codes, err := svc.Confirm(ctx, "u1", Code(key, Step(c.Now())))
	if err != nil || len(codes) != RecoveryCodes {
		t.Fatalf("confirm: %v %d", err, len(codes))
	}
	if !rec.Has(ActionEnrolled, audit.Success) {
		t.Fatal("enrolment not audited")
	}
	cred, _ = store.GetMFA(ctx, "u1")
	for _, h := range cred.RecoveryHashes {
		for _, code := range codes {
			if strings.Contains(string(h), code) {
				t.Fatal("recovery code stored in clear")
			}
		}
	}
	if _, _, err := svc.Pending(ctx, "u1", "amy"); !errors.Is(err, ErrAlreadyEnrolled) {
		t.Fatalf("re-enrolment over a confirmed factor: %v", err)
	}
	// The code used to confirm cannot be replayed.
	if err := svc.Verify(ctx, "u1", Code(key, Step(c.Now()))); !errors.Is(err, ErrReplayed) {
		t.Fatalf("confirm code replayed: %v", err)
	}
	c.Advance(Period)
	code := Code(key, Step(c.Now()))
	if err := svc.Verify(ctx, "u1", code); err != nil {
		t.Fatalf("fresh code: %v", err)
	}
	if err := svc.Verify(ctx, "u1", code); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed code: %v", err)
	}
	// An older step still inside the window is refused after a newer one.
	if err := svc.Verify(ctx, "u1", Code(key, Step(c.Now())-1)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("older step after newer: %v", err)
	}
	if err := svc.Verify(ctx, "u1", "999999"); !errors.Is(err, ErrInvalidCode) && !errors.Is(err, ErrReplayed) {
		t.Fatalf("wrong code: %v", err)
	}
	if !rec.Has(ActionVerified, audit.Failure) {
		t.Fatal("refusal not audited")
	}
	// Recovery codes: single use, any case and separators.
	if err := svc.Verify(ctx, "u1", strings.ToUpper(strings.ReplaceAll(codes[0], "-", " "))); err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	if err := svc.Verify(ctx, "u1", codes[0]); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("recovery code reused: %v", err)
	}
	if err := svc.Verify(ctx, "u1", "aaaa-aaaa-aaaa-aaaa"); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("made-up recovery code: %v", err)
	}
	// Concurrent use of one fresh code: exactly one wins.
	c.Advance(Period)
	code = Code(key, Step(c.Now()))
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if svc.Verify(ctx, "u1", code) == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent winners", wins)
	}
	// A different key-encryption key cannot open the secret.
	other, _ := New(Options{Store: store, KEK: []byte("another key-encryption key!!"), Auditor: rec, Now: c.Now})
	c.Advance(Period)
	if err := other.Verify(ctx, "u1", Code(key, Step(c.Now()))); err == nil {
		t.Fatal("secret opened under another KEK")
	}
	// Audit failure on success fails closed.
	rec.Fail = errors.New("disk full")
	if err := svc.Verify(ctx, "u1", Code(key, Step(c.Now()))); err == nil {
		t.Fatal("verified without an audit record")
	}
	rec.Fail = nil
	if err := svc.Reset(ctx, "u1", "admin"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := svc.Enrolled(ctx, "u1"); ok {
		t.Fatal("still enrolled after reset")
	}
}

func TestLocalNext(t *testing.T) {
	for in, want := range map[string]string{
		"/authorize/continue?req=x": "/authorize/continue?req=x",
		"/console":                  "/console",
		"":                          DefaultNext,
		"//evil.example/":           DefaultNext,
		"https://evil.example/":     DefaultNext,
		"/\\evil.example":           DefaultNext,
		"javascript:alert(1)":       DefaultNext,
		"console":                   DefaultNext,
	} {
		if got := LocalNext(in); got != want {
			t.Errorf("LocalNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProvisionedEnrolment: with EnrolProvisioned only a key an
// administrator provisioned can be confirmed, and no page-facing call ever
// returns it; a key a user started on the page earlier (self mode) does not
// count; a confirmed factor cannot be provisioned over.
func TestProvisionedEnrolment(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	c := &clock{t: time.Date(2026, 3, 1, 8, 0, 10, 0, time.UTC)}
	rec := &audittest.Recorder{}
	self, err := New(Options{Store: store, KEK: testKEK, Auditor: rec, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	prov, err := New(Options{Store: store, KEK: testKEK, Auditor: rec, Now: c.Now, Enrolment: EnrolProvisioned})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Store: store, KEK: testKEK, Auditor: rec, Enrolment: "anyone"}); err == nil {
		t.Fatal("unknown enrolment mode accepted")
	}

	// No key yet: nothing to show, nothing started.
	if _, _, err := prov.Pending(ctx, "u1", "amy"); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("pending without a provisioned key: %v", err)
	}
	if _, err := store.GetMFA(ctx, "u1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a key was started: %v", err)
	}
	// A key the user started themselves (say, before the mode changed)
	// cannot be confirmed in provisioned mode.
	if _, _, err := self.Pending(ctx, "u1", "amy"); err != nil {
		t.Fatal(err)
	}
	selfKey := keyOf(t, self, store, "u1")
	if _, _, err := prov.Pending(ctx, "u1", "amy"); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("self-started key offered in provisioned mode: %v", err)
	}
	if _, err := prov.Confirm(ctx, "u1", Code(selfKey, Step(c.Now()))); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("self-started key confirmed in provisioned mode: %v", err)
	}

	// Provisioning replaces it; the key is returned once, to the admin.
	uri, key, err := prov.Provision(ctx, "u1", "amy", "cli")
	if err != nil || !strings.HasPrefix(uri, "otpauth://totp/") || key == "" {
		t.Fatalf("provision: %q %q %v", uri, key, err)
	}
	if !rec.Has(ActionProvisioned, audit.Success) {
		t.Fatalf("no %s audit event", ActionProvisioned)
	}
	raw := keyOf(t, prov, store, "u1")
	if EncodeKey(raw) != key || EncodeKey(raw) == EncodeKey(selfKey) {
		t.Fatal("provisioned key is not the stored one, or the old one was kept")
	}
	for _, svc := range []*Service{prov, self} { // never shown on a page, in either mode
		if uri, key, err := svc.Pending(ctx, "u1", "amy"); err != nil || uri != "" || key != "" {
			t.Fatalf("a provisioned key was disclosed: %q %q %v", uri, key, err)
		}
	}
	if _, err := prov.Confirm(ctx, "u1", Code(selfKey, Step(c.Now()))); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("the replaced key still works: %v", err)
	}
	codes, err := prov.Confirm(ctx, "u1", Code(raw, Step(c.Now())))
	if err != nil || len(codes) != RecoveryCodes {
		t.Fatalf("confirm provisioned key: %v", err)
	}
	if _, _, err := prov.Provision(ctx, "u1", "amy", "cli"); !errors.Is(err, ErrAlreadyEnrolled) {
		t.Fatalf("provisioned over a confirmed factor: %v", err)
	}
}
