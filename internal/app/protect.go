package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/anomaly"
	anredis "github.com/fhirgate/fhirgate/internal/anomaly/redis"
	"github.com/fhirgate/fhirgate/internal/anomaly/sqlstore"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authorize"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/health"
	"github.com/fhirgate/fhirgate/internal/metrics"
	"github.com/fhirgate/fhirgate/internal/ratelimit"
	rlredis "github.com/fhirgate/fhirgate/internal/ratelimit/redis"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/tlsconfig"
)

// AdminTokensPath is the admin token file: admin.tokens_file, or
// admin-tokens.json in the data directory.
func AdminTokensPath(cfg *config.Config) string {
	if cfg.Admin.TokensFile != "" {
		return cfg.Admin.TokensFile
	}
	return filepath.Join(cfg.DataDir, "admin-tokens.json")
}

// protection is an App's metrics, health checks, rate limits, anomaly
// detector and admin listener. A nil *protection wraps nothing.
type protection struct {
	log       *slog.Logger
	metrics   *metrics.Registry
	health    *health.Handler
	redis     *goredis.Client
	admission *ratelimit.Admission
	detector  *anomaly.Detector
	anomalies anomaly.Store // the detector's store (nil without the detector)
	adminLn   net.Listener
	adminSrv  *http.Server
	adminURL  string
	admin     *adminapi.Handler
	depth     atomic.Value // func() int: the audit queue depth
	started   bool
	served    chan error

	// closeAnomalies closes the anomaly store's own connections (nil when
	// it has none).
	closeAnomalies func() error
}

// newProtection makes the metrics registry and health checks, which exist
// before the audit trail opens (the trail reports its commits to metrics).
func newProtection(log *slog.Logger) *protection {
	return &protection{log: log, metrics: metrics.New(), health: health.New(health.Options{Logger: log}), served: make(chan error, 1)}
}

// build makes the rate limiter, the anomaly detector and the admin listener
// (bound when admin.addr is set). auditor is the unwrapped auditor.
func (p *protection) build(ctx context.Context, cfg *config.Config, store storage.Store, auditor audit.Auditor,
	now func() time.Time) (err error) {
	log := p.log
	defer func() {
		if err != nil {
			_ = p.close(context.Background())
		}
	}()
	p.health.Add("store", store.Ping)
	if confs, err := upstreamConfigs(cfg); err == nil {
		for _, c := range confs {
			if addr := hostPort(c.URL); addr != "" {
				p.health.Add("upstream "+c.Prefix, dialCheck(addr))
			}
		}
	}

	policy, err := cfg.RateLimit.RatePolicy()
	if err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	var limiter ratelimit.Limiter = ratelimit.NewMemory(ratelimit.MemoryOptions{Now: now})
	if cfg.RateLimit.Backend == "redis" || (cfg.Anomaly.Enabled && cfg.Anomaly.Store == "redis") {
		ropts, err := goredis.ParseURL(cfg.RateLimit.RedisURL)
		if err != nil {
			return fmt.Errorf("ratelimit.redis_url: %w", err)
		}
		p.redis = goredis.NewClient(ropts)
	}
	if cfg.RateLimit.Backend == "redis" {
		if limiter, err = rlredis.New(rlredis.Options{Client: p.redis, Prefix: cfg.RateLimit.RedisPrefix, Now: now, ServerTime: true, FailOpen: cfg.RateLimit.FailOpen, Logger: log}); err != nil {
			return fmt.Errorf("ratelimit: %w", err)
		}
		if !cfg.RateLimit.FailOpen {
			// Failing closed, the server cannot serve without Redis.
			p.health.Add("redis", func(ctx context.Context) error { return p.redis.Ping(ctx).Err() })
		}
	}
	guard, err := ratelimit.NewGuard(limiter, policy)
	if err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	p.admission = &ratelimit.Admission{Guard: guard, Metrics: p.metrics, Auditor: auditor, Logger: log, Now: now}

	if cfg.Anomaly.Enabled {
		var notifier anomaly.Notifier
		if cfg.Anomaly.WebhookURL != "" {
			wh, err := anomaly.NewWebhook(anomaly.WebhookConfig{URL: cfg.Anomaly.WebhookURL, Secret: cfg.Anomaly.WebhookSecret}, nil, now)
			if err != nil {
				return fmt.Errorf("anomaly.webhook_url: %w", err)
			}
			notifier = wh
		}
		var store anomaly.Store
		if store, err = p.openAnomalyStore(ctx, cfg); err != nil {
			return err
		}
		p.anomalies = store
		if p.detector, err = anomaly.New(anomaly.Options{
			Config: cfg.Anomaly.DetectorConfig(), Store: store, Auditor: auditor, Notifier: notifier,
			Metrics: p.metrics, Logger: log, Now: now,
		}); err != nil {
			return fmt.Errorf("anomaly: %w", err)
		}
		det := p.detector
		p.admission.Status = func(clientID, userID, ip string) (bool, bool) {
			v := det.Check(clientID, userID, ip)
			return v.Suspended(), v.Throttled()
		}
	}

	if cfg.Admin.Addr != "" {
		if err := p.listenAdmin(ctx, cfg, auditor, now); err != nil {
			return err
		}
	}
	return nil
}

// openAnomalyStore opens the configured anomaly store: the main store's
// database (anomaly.store: store), Redis or memory. A store with
// connections of its own is closed by close.
func (p *protection) openAnomalyStore(ctx context.Context, cfg *config.Config) (anomaly.Store, error) {
	switch cfg.Anomaly.Store {
	case "redis":
		s, err := anredis.New(p.redis, strings.TrimSuffix(cfg.RateLimit.RedisPrefix, "rl:")+"anomaly:", 0)
		if err != nil {
			return nil, fmt.Errorf("anomaly store: %w", err)
		}
		return s, nil
	case "memory":
		return anomaly.NewMemory(0), nil
	}
	if cfg.Storage.Driver == "postgres" {
		s, err := sqlstore.OpenPostgres(ctx, cfg.Storage.DSN, "")
		if err != nil {
			return nil, fmt.Errorf("anomaly store: %w", err)
		}
		p.closeAnomalies = s.Close
		return s, nil
	}
	s, err := sqlstore.OpenSQLite(ctx, cfg.SQLitePath())
	if err != nil {
		return nil, fmt.Errorf("anomaly store: %w", err)
	}
	p.closeAnomalies = s.Close
	return s, nil
}

// listenAdmin binds the admin listener and builds its server.
func (p *protection) listenAdmin(ctx context.Context, cfg *config.Config, auditor audit.Auditor, now func() time.Time) error {
	opts := adminapi.Options{
		Tokens: adminapi.NewFileTokens(AdminTokensPath(cfg)), Metrics: p.metrics,
		Auditor: auditor, Logger: p.log, Now: now,
	}
	if p.detector != nil {
		opts.Anomalies = p.detector
	}
	var tlsCfg *tls.Config
	if cfg.TLSEnabled() {
		var err error
		if tlsCfg, err = tlsconfig.Server(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return fmt.Errorf("admin tls: %w", err)
		}
		if cfg.Admin.ClientCAFile != "" {
			pem, err := os.ReadFile(cfg.Admin.ClientCAFile)
			if err != nil {
				return fmt.Errorf("admin.client_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("admin.client_ca_file: no PEM certificates in %s", cfg.Admin.ClientCAFile)
			}
			tlsCfg.ClientCAs, tlsCfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
			opts.AllowClientCerts = true
			for s := range strings.SplitSeq(cfg.Admin.CertSubjects, ",") {
				if s = strings.TrimSpace(s); s != "" {
					opts.CertSubjects = append(opts.CertSubjects, s)
				}
			}
		}
	}
	api, err := adminapi.New(opts)
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
	}
	p.admin = api
	mux := http.NewServeMux()
	p.health.Register(mux) // probes need no token
	mux.Handle("/", api)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Admin.Addr)
	if err != nil {
		return fmt.Errorf("listen on admin.addr %s: %w", cfg.Admin.Addr, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		ln, scheme = tls.NewListener(ln, tlsCfg), "https"
	}
	p.adminLn, p.adminURL = ln, scheme+"://"+ln.Addr().String()
	p.adminSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// hostPort is the host:port of an http(s) URL ("" when unparsable).
func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// dialCheck is a readiness check that the upstream accepts connections
// (without sending it a request or its credentials).
func dialCheck(addr string) health.Check {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// auditObserver is the durable audit trail's commit hook (its Observe
// option): it feeds the commit latency, batch size and queue depth metrics.
func (p *protection) auditObserver() func(batch int, latency time.Duration, err error) {
	if p == nil {
		return nil
	}
	return func(batch int, latency time.Duration, err error) {
		if err == nil {
			p.metrics.ObserveAuditCommit(batch, latency)
		}
		if f, ok := p.depth.Load().(func() int); ok {
			p.metrics.SetAuditQueueDepth(f())
		}
	}
}

// setAuditDepth names the audit trail's queue depth for the metrics.
func (p *protection) setAuditDepth(f func() int) {
	if p != nil && f != nil {
		p.depth.Store(f)
	}
}

// mountAdminAudit serves the audit query API (GET /admin/audit) on the
// admin listener, when both exist.
func (a *App) mountAdminAudit() error {
	if a.prot == nil || a.prot.admin == nil || a.trail == nil {
		return nil
	}
	api, err := a.AuditAPI(nil, nil)
	if err != nil {
		return fmt.Errorf("admin audit API: %w", err)
	}
	a.prot.admin.Handle("GET /admin/audit", api.AdminHandler())
	return nil
}

// auditor wraps next so the detector and the counters see every event.
func (p *protection) auditor(next audit.Auditor) audit.Auditor {
	if p == nil {
		return next
	}
	return anomaly.Tap{Next: next, Detector: p.detector, Metrics: p.metrics}
}

// tokenWrap wraps the /token handler (inside its CORS wrapper, so refusals
// are readable by browser apps).
func (p *protection) tokenWrap(next func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	if p == nil {
		return next
	}
	limit := p.admission.Middleware(ratelimit.EndpointToken)
	return func(h http.Handler) http.Handler {
		h = limit(h)
		if next != nil {
			h = next(h)
		}
		return h
	}
}

// gatewayAdmit is the gateway's admission hook (nil without protection).
func (p *protection) gatewayAdmit() func(*http.Request, string, string) (func(http.ResponseWriter), string) {
	if p == nil {
		return nil
	}
	return p.admission.Gateway
}

// wrap puts the public mux behind the metrics middleware, the health
// endpoints and the login and /authorize rate limits.
func (p *protection) wrap(mux *http.ServeMux) http.Handler {
	if p == nil {
		return mux
	}
	hm := http.NewServeMux()
	p.health.Register(hm)
	login := p.admission.Middleware(ratelimit.EndpointLogin)(mux)
	authz := p.admission.Middleware(ratelimit.EndpointAuthorize)(mux)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" || r.URL.Path == "/readyz":
			hm.ServeHTTP(w, r)
		case r.URL.Path == authorize.PathLogin && r.Method == http.MethodPost:
			r.Pattern = "POST " + authorize.PathLogin // the label when refused before the mux
			login.ServeHTTP(w, r)
		case r.URL.Path == authorize.PathAuthorize:
			r.Pattern = r.Method + " " + authorize.PathAuthorize
			authz.ServeHTTP(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	})
	return p.metrics.Middleware(inner)
}

// start serves the admin listener in the background.
func (p *protection) start() {
	if p == nil || p.adminSrv == nil {
		return
	}
	p.started = true
	go func() { p.served <- p.adminSrv.Serve(p.adminLn) }()
	p.log.Info("admin API serving", "url", p.adminURL)
}

// draining marks the server as shutting down for /readyz.
func (p *protection) draining() {
	if p != nil {
		p.health.SetDraining(true)
	}
}

// close stops the admin listener, flushes the detector and closes the
// anomaly store and Redis.
func (p *protection) close(ctx context.Context) error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.started {
		if err := p.adminSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin listener: %w", err))
		}
	} else if p.adminLn != nil {
		_ = p.adminLn.Close()
	}
	if p.detector != nil {
		if err := p.detector.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("anomaly detector: %w", err))
		}
	}
	if p.closeAnomalies != nil {
		if err := p.closeAnomalies(); err != nil {
			errs = append(errs, fmt.Errorf("anomaly store: %w", err))
		}
		p.closeAnomalies = nil
	}
	if p.redis != nil {
		_ = p.redis.Close()
	}
	return errors.Join(errs...)
}

// suspended reports whether the detector suspends the client or the user
// (nil without the detector), for /token and /authorize.
func (p *protection) suspended() func(clientID, userID string) bool {
	if p == nil || p.detector == nil {
		return nil
	}
	d := p.detector
	return func(clientID, userID string) bool { return d.Check(clientID, userID, "").Suspended() }
}

// anomalyStore is the anomaly store the console reads and clears: clearing
// goes through the detector so a lifted suspension ends at once on this node.
// nil without the detector.
func (p *protection) anomalyStore() anomaly.Store {
	if p == nil || p.detector == nil || p.anomalies == nil {
		return nil
	}
	return detectorStore{Store: p.anomalies, d: p.detector}
}

// detectorStore is an anomaly.Store whose clears also update the detector's
// in-force set (and are audited and announced by it).
type detectorStore struct {
	anomaly.Store
	d *anomaly.Detector
}

func (s detectorStore) Clear(ctx context.Context, id, by string, _ time.Time) (*anomaly.Anomaly, error) {
	return s.d.Clear(ctx, id, by)
}

func (s detectorStore) ClearSubject(ctx context.Context, sub anomaly.Subject, by string, _ time.Time) ([]anomaly.Anomaly, error) {
	return s.d.ClearSubject(ctx, sub, by)
}

// upstreamTransport measures calls to the upstream at prefix.
func (p *protection) upstreamTransport(prefix string, next http.RoundTripper) http.RoundTripper {
	if p == nil {
		return next
	}
	return p.metrics.Transport(prefix, next)
}

// AdminURL returns the admin listener's URL, or "" without admin.addr.
func (a *App) AdminURL() string {
	if a.prot == nil {
		return ""
	}
	return a.prot.adminURL
}
