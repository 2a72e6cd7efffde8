package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// BenchmarkTokenHTTP measures /token throughput over real loopback HTTP next
// to a bare handler that only signs one ES256 JWT per request, in one run, so
// the ratio between them holds on a noisy shared machine:
//
//	go test -run=^$ -bench=TokenHTTP -benchtime=2s ./internal/app/
//
// It reports req/s, CPU per request (server and load generator together)
// and CPU utilisation, at 32 and 128 concurrent clients. The requests run
// with the durable audit trail (audit-sync), with audit.mode async
// (audit-async), and with events only logged (audit-off, audit.sink log),
// which shows what durable audit costs /token.
//
// The goal (issue 2) is code-exchange throughput at least half of bare-es256;
// the RS256 id_token variant is the documented exception.
func BenchmarkTokenHTTP(b *testing.B) {
	benchmarkTokenHTTP(b, "audit-sync", map[string]string{"ratelimit.token_per_ip": "off"})
	benchmarkTokenHTTP(b, "audit-async", map[string]string{"audit.mode": "async", "ratelimit.token_per_ip": "off"})
	benchmarkTokenHTTP(b, "audit-off", map[string]string{"audit.sink": "log", "ratelimit.token_per_ip": "off"})
	if dsn := os.Getenv("FHIRGATE_TEST_POSTGRES_DSN"); dsn != "" {
		benchmarkTokenHTTP(b, "postgres", map[string]string{"storage.driver": "postgres",
			"storage.dsn": benchSchemaDSN(b, dsn), "ratelimit.token_per_ip": "off"})
	}
}

// benchSchemaDSN creates a fresh schema, dropped when b ends, and returns dsn
// with it as the search_path.
func benchSchemaDSN(b *testing.B, dsn string) string {
	ctx := context.Background()
	schema := "fhirgate_bench_" + strings.ToLower(secret.ID()[:12])
	schema = strings.NewReplacer("-", "_").Replace(schema)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// tokenBench is a server with a patient user and a public client to drive
// /token with, and a bare handler that only signs one ES256 JWT per request.
type tokenBench struct {
	ts     *testServer
	user   *storage.User
	client *storage.Client
	bare   *httptest.Server
}

// benchRedirect is the bench client's registered redirect URI.
const benchRedirect = "http://127.0.0.1/cb"

func newTokenBench(t testing.TB, overrides map[string]string) *tokenBench {
	ts := startServer(t, overrides)
	ctx := context.Background()
	store := ts.app.Store()
	user, err := CreateUser(ctx, store, NewUser{Username: "bench", Password: "bench-password", Role: storage.RolePatient, FHIRUser: "Patient/1"}, fastPW, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	client, _, err := CreateClient(ctx, store, clientreg.Metadata{
		ClientName: "bench", RedirectURIs: []string{benchRedirect}, TokenEndpointAuthMethod: "none",
		Scope: "openid fhirUser launch/patient offline_access patient/*.rs",
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signer := ts.app.Keys()
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		tok, err := signer.Sign("ES256", "at+jwt", map[string]any{
			"iss": ts.app.Issuer(), "sub": user.ID, "aud": ts.app.FHIRBase(), "client_id": client.ID,
			"scope": "patient/*.rs", "jti": secret.ID(), "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
		})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 900})
	}))
	t.Cleanup(bare.Close)
	return &tokenBench{ts: ts, user: user, client: client, bare: bare}
}

// codes stores n authorization codes for the bench client and user, with
// scope, and returns them with their PKCE verifier.
func (tb *tokenBench) codes(t testing.TB, n int, scope string) (codes []string, verifier string) {
	ctx := context.Background()
	verifier = secret.Token() + "-verifier"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	codes = make([]string, n)
	now := time.Now()
	for i := range codes {
		codes[i] = secret.Token()
		if err := tb.ts.app.Store().CreateAuthCode(ctx, &storage.AuthCode{
			Hash: storage.HashSecret(codes[i]), ClientID: tb.client.ID, RedirectURI: benchRedirect,
			CodeChallenge: challenge, Scope: scope, UserID: tb.user.ID, AuthTime: now,
			Context:  storage.LaunchContext{Patient: "1", NeedPatientBanner: true},
			FamilyID: secret.TimeID(time.Now()), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
	}
	return codes, verifier
}

// exchangeForm is the form of the code exchange of code.
func (tb *tokenBench) exchangeForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {benchRedirect},
		"client_id": {tb.client.ID}, "code_verifier": {verifier}}
}

func benchmarkTokenHTTP(b *testing.B, label string, overrides map[string]string) {
	tb := newTokenBench(b, overrides)
	ts, user, client := tb.ts, tb.user, tb.client
	ctx := context.Background()
	store := ts.app.Store()
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer httpClient.CloseIdleConnections() // before the server's shutdown

	// Each request kind runs at two concurrencies next to the bare handler
	// at the same one: a durable audit write makes each request wait for a
	// group commit, so few clients measure that latency and more clients
	// the throughput the server can sustain.
	for _, clients := range tokenBenchClients {
		name := fmt.Sprintf("%s/c%d", label, clients)
		parallelism := max(1, clients/runtime.GOMAXPROCS(0))
		b.Run(name+"/bare-es256", func(b *testing.B) {
			b.SetParallelism(parallelism)
			b.ResetTimer()
			meter := startCPUMeter(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					post(b, httpClient, tb.bare.URL, url.Values{"grant_type": {"authorization_code"}})
				}
			})
			reportRate(b)
			meter.report(b)
		})

		b.Run(name+"/client-credentials", func(b *testing.B) {
			backend, secretValue, err := CreateClient(ctx, store, clientreg.Metadata{
				ClientName: "bench backend", GrantTypes: []string{"client_credentials"},
				TokenEndpointAuthMethod: "client_secret_basic", Scope: "system/Observation.rs",
			}, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			tokenURL := ts.app.Issuer() + "/token"
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Observation.rs"}}.Encode()
			b.SetParallelism(parallelism)
			b.ResetTimer()
			meter := startCPUMeter(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(backend.ID, secretValue)
					resp, err := httpClient.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d: %s", resp.StatusCode, body)
						return
					}
				}
			})
			reportRate(b)
			meter.report(b)
		})

		b.Run(name+"/refresh", func(b *testing.B) {
			// Each request rotates its own refresh token, in a family of its own
			// as each app's grant would be.
			const refreshScope = "launch/patient offline_access patient/*.rs"
			tokens := make([]string, b.N)
			now := time.Now()
			for i := range tokens {
				fam := &storage.TokenFamily{ID: secret.TimeID(time.Now()), ClientID: client.ID, UserID: user.ID,
					Scope: refreshScope, Context: storage.LaunchContext{Patient: "1"}, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
				if err := store.CreateFamily(ctx, fam); err != nil {
					b.Fatal(err)
				}
				tokens[i] = secret.TimedToken(time.Now())
				if err := store.CreateRefreshToken(ctx, &storage.RefreshToken{Hash: storage.RefreshTokenKey(tokens[i]), FamilyID: fam.ID,
					ClientID: client.ID, UserID: user.ID, Scope: refreshScope, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
			postEach(b, httpClient, ts.app.Issuer()+"/token", parallelism, `"refresh_token"`, func(i int) url.Values {
				return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens[i]}, "client_id": {client.ID}}
			})
		})

		for _, tc := range []struct{ name, scope string }{
			{"code-exchange", "launch/patient patient/*.rs"},
			{"code-exchange-rs256-id-token", "openid fhirUser launch/patient patient/*.rs"},
		} {
			b.Run(name+"/"+tc.name, func(b *testing.B) {
				codes, verifier := tb.codes(b, b.N, tc.scope)
				postEach(b, httpClient, ts.app.Issuer()+"/token", parallelism, `"access_token"`, func(i int) url.Values {
					return tb.exchangeForm(codes[i], verifier)
				})
			})
		}
	}
}

// tokenBenchClients are the numbers of concurrent HTTP clients: /token
// serves many apps at once, and the durable audit trail's group commit
// batches their events into one fsync, so a serial client would measure
// fsync latency.
var tokenBenchClients = []int{32, 128}

func post(b *testing.B, c *http.Client, u string, form url.Values) string {
	resp, err := c.PostForm(u, form)
	if err != nil {
		b.Error(err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body)
}

// postEach is a timed loop of b.N form POSTs to u, the i-th with form(i),
// from parallelism goroutines per processor; each answer must contain want.
// It reports req/s, CPU and latency.
func postEach(b *testing.B, c *http.Client, u string, parallelism int, want string, form func(i int) url.Values) {
	var (
		next      atomic.Int64
		latencies latencyLog
	)
	b.SetParallelism(parallelism)
	b.ResetTimer()
	meter := startCPUMeter(b)
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		defer func() { latencies.add(mine) }()
		for pb.Next() {
			t0 := time.Now()
			if body := post(b, c, u, form(int(next.Add(1)-1))); !strings.Contains(body, want) {
				b.Errorf("token response: %s", body)
				return
			}
			mine = append(mine, time.Since(t0))
		}
	})
	reportRate(b)
	meter.report(b)
	latencies.report(b)
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
