package revocation_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/revocation"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest/backends"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

const (
	issuerURL = "https://auth.example.org"
	fhirBase  = "https://fhir.example.org/fhir"
	patient   = "pt-001"
)

type gatewayFixture struct {
	t       *testing.T
	store   storage.Store
	src     *switchable
	issuer  *token.Issuer
	checker *revocation.Checker
	srv     *httptest.Server
}

// switchable is the store's revocation list, which a test can break.
type switchable struct {
	revocation.Source
	mu   sync.Mutex
	down bool
}

func (s *switchable) setDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

func (s *switchable) RevokedSince(ctx context.Context, since, now time.Time) ([]storage.RevokedToken, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, errors.New("database unreachable")
	}
	return s.Source.RevokedSince(ctx, since, now)
}

// newGatewayFixture runs the real gateway in front of the demo EHR with a
// Checker polling the store every interval.
// Without run, the checker refreshes on demand only.
func newGatewayFixture(t *testing.T, st storage.Store, interval, staleness time.Duration, run bool) *gatewayFixture {
	t.Helper()
	ctx := context.Background()
	km, err := keys.New(ctx, keys.Options{Store: st, KEK: keys.DevKEK()})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: issuerURL})
	if err != nil {
		t.Fatal(err)
	}
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	t.Cleanup(ehrSrv.Close)
	up, err := upstream.Build(upstream.Config{URL: ehrSrv.URL, Auth: upstream.AuthConfig{Type: upstream.AuthBasic, Username: "gw", Password: "pw"}},
		upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := &switchable{Source: st}
	checker, err := revocation.New(revocation.Options{Source: src, Interval: interval, MaxStaleness: staleness})
	if err != nil {
		t.Fatal(err)
	}
	if run {
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = checker.Run(runCtx) }()
		t.Cleanup(func() { stop(); <-done })
	}
	h, err := gateway.New(gateway.Options{
		BaseURL: fhirBase, Upstreams: []*upstream.Upstream{up}, Tokens: iss, Revocations: checker,
		SMARTConfiguration: func() ([]byte, error) { return []byte(`{}`), nil },
		Auditor:            &audittest.Recorder{}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &gatewayFixture{t: t, store: st, src: src, issuer: iss, checker: checker, srv: srv}
}

func (g *gatewayFixture) token() (string, token.AccessClaims) {
	g.t.Helper()
	now := time.Now()
	fam := secret.ID()
	if err := g.store.CreateFamily(context.Background(), &storage.TokenFamily{ID: fam, ClientID: "app", UserID: "u1",
		Scope: "patient/*.rs", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		g.t.Fatal(err)
	}
	raw, c, err := g.issuer.AccessToken(token.AccessClaims{Subject: "u1", Audience: fhirBase, ClientID: "app",
		Scope: "patient/*.rs", Patient: patient, FamilyID: fam})
	if err != nil {
		g.t.Fatal(err)
	}
	return raw, c
}

func (g *gatewayFixture) status(tok string) int {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.srv.URL+"/fhir/Patient/"+patient, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := g.srv.Client().Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls until tok gets want, and returns how long that took.
func (g *gatewayFixture) waitStatus(tok string, want int, limit time.Duration) time.Duration {
	g.t.Helper()
	start := time.Now()
	for {
		if g.status(tok) == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			g.t.Fatalf("status %d not reached within %s", want, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRevokedTokenStopsAtGatewayWithinBound: a token revoked at the
// authorization server (family or jti) is refused by the gateway within the
// polling interval, long before its expiry.
func TestRevokedTokenStopsAtGatewayWithinBound(t *testing.T) {
	const interval, staleness = 100 * time.Millisecond, time.Second
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		for _, run := range []bool{true, false} {
			t.Logf("background loop: %v", run)
			revokedWithinBound(t, newGatewayFixture(t, open(t), interval, staleness, run), interval, staleness)
		}
	})
}

func revokedWithinBound(t *testing.T, g *gatewayFixture, interval, staleness time.Duration) {
	{
		famTok, famClaims := g.token()
		jtiTok, jtiClaims := g.token()
		other, _ := g.token()
		g.waitStatus(famTok, http.StatusOK, 2*time.Second) // the first poll has landed
		for _, tok := range []string{jtiTok, other} {
			if s := g.status(tok); s != http.StatusOK {
				t.Fatalf("before revocation: %d", s)
			}
		}

		ctx := context.Background()
		if err := g.store.RevokeFamily(ctx, famClaims.FamilyID, time.Now(), "test"); err != nil {
			t.Fatal(err)
		}
		took := g.waitStatus(famTok, http.StatusUnauthorized, staleness)
		t.Logf("family revocation reached the gateway in %s (interval %s)", took, interval)
		if took > interval+200*time.Millisecond {
			t.Errorf("family revocation took %s, bound %s", took, interval)
		}

		if err := g.store.RevokeAccessToken(ctx, jtiClaims.JTI, time.Unix(jtiClaims.ExpiresAt, 0), time.Now()); err != nil {
			t.Fatal(err)
		}
		took = g.waitStatus(jtiTok, http.StatusUnauthorized, staleness)
		t.Logf("jti revocation reached the gateway in %s", took)
		if took > interval+200*time.Millisecond {
			t.Errorf("jti revocation took %s, bound %s", took, interval)
		}
		if s := g.status(other); s != http.StatusOK {
			t.Fatalf("an unrelated token was refused: %d", s)
		}
	}
}

// TestGatewayFailsClosedWhenStale: when the list cannot be refreshed for
// longer than the staleness bound, the gateway refuses every token (503).
func TestGatewayFailsClosedWhenStale(t *testing.T) {
	const interval, staleness = 50 * time.Millisecond, 300 * time.Millisecond
	g := newGatewayFixture(t, backends.OpenSQLite(t), interval, staleness, true)
	tok, _ := g.token()
	g.waitStatus(tok, http.StatusOK, 2*time.Second)
	g.src.setDown(true) // the store becomes unreachable
	took := g.waitStatus(tok, http.StatusServiceUnavailable, 2*time.Second)
	if took > staleness+200*time.Millisecond {
		t.Errorf("stale list still trusted after %s (bound %s)", took, staleness)
	}
	g.src.setDown(false) // and comes back: the next request reloads the list
	g.waitStatus(tok, http.StatusOK, 2*time.Second)
}
