// Package app is fhirgate's composition root: from a validated config it
// builds the store, the signing keys, the token issuer and every HTTP
// feature on one mux, and runs the server with a graceful stop. It is the
// only package that imports everything.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/tlsconfig"
	"github.com/fhirgate/fhirgate/internal/token"
)

// DefaultKeyReload is how often the server re-reads the signing keys, so a
// `fhirgate keys rotate` run from the CLI is picked up.
const DefaultKeyReload = 30 * time.Second

// ShutdownTimeout bounds the graceful stop in Run.
const ShutdownTimeout = 10 * time.Second

// ErrInsecureListener is returned when plain http would listen on a
// non-loopback address without insecure_http_behind_proxy.
var ErrInsecureListener = errors.New("refusing plain http on a non-loopback address: configure tls.cert_file and tls.key_file, or set insecure_http_behind_proxy: true when a TLS-terminating proxy sits in front")

// Options are the process-level dependencies of an App.
type Options struct {
	// Logger receives operational logs and, through the LogAuditor, audit events.
	Logger *slog.Logger
	// Ready receives the one "fhirgate: serving on ..." line once the server
	// accepts connections (io.Discard when nil).
	Ready io.Writer
	// Auditor records security events; when nil, the durable audit trail
	// configured by audit.* (or an audit.LogAuditor on Logger for audit.sink: log).
	Auditor audit.Auditor
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// KeyReload is the signing-key reload interval; DefaultKeyReload when zero.
	KeyReload time.Duration
	// Store, when set, is used instead of opening the configured backend
	// (tests). The App does not close a store it did not open.
	Store storage.Store
}

// App is a built, not yet serving, fhirgate server.
type App struct {
	cfg       *config.Config
	log       *slog.Logger
	ready     io.Writer
	store     storage.Store
	ownStore  bool
	keys      *keys.Manager
	tokens    *token.Issuer
	prot      *protection
	handler   http.Handler
	ln        net.Listener
	srv       *http.Server
	mtlsLn    net.Listener // mtls.addr: requests client certificates (nil when not configured)
	mtlsSrv   *http.Server
	bnd       *binding // replay cache, DPoP verifier, trusted proxies (closed on shutdown)
	keyReload time.Duration
	trail     *trail.Trail // the durable audit trail, when this App opened it
	auditSink chain.Sink

	stopWatch context.CancelFunc
	served    chan error
	closeOnce sync.Once
}

// New checks the listener rules, binds the listener (so the issuer derived
// from addr knows the real port of ":0"), opens the store and keys and
// builds every handler. cfg must have passed Validate; New keeps using it
// and may update its derived issuer and fhir_base.
func New(ctx context.Context, cfg *config.Config, opts Options) (a *App, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Ready == nil {
		opts.Ready = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.KeyReload <= 0 {
		opts.KeyReload = DefaultKeyReload
	}
	log := opts.Logger
	if err := CheckListener(cfg, log); err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if cfg.TLSEnabled() {
		if tlsCfg, err = tlsconfig.Server(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}

	a = &App{cfg: cfg, log: log, ready: opts.Ready, keyReload: opts.KeyReload, served: make(chan error, 2)}
	self := a // the named result is nil by the time a failing return runs the cleanup
	defer func() {
		if err != nil {
			self.closeResources()
		}
	}()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	a.ln = ln
	cfg.SetListenAddr(ln.Addr().String())
	if tlsCfg != nil {
		a.ln = tls.NewListener(ln, tlsCfg)
	}
	if cfg.MTLS.Addr != "" {
		if a.mtlsLn, err = listenMTLS(ctx, cfg, tlsCfg, opts.Now); err != nil {
			return nil, err
		}
	}

	if opts.Store != nil {
		a.store = opts.Store
	} else {
		if a.store, err = OpenStore(ctx, cfg); err != nil {
			return nil, err
		}
		a.ownStore = true
	}
	if err := a.store.Ping(ctx); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	a.prot = newProtection(log) // metrics first: the audit trail reports to them
	if opts.Auditor == nil {
		if opts.Auditor, err = a.openAudit(ctx, cfg, log, opts.Now); err != nil {
			return nil, err
		}
	}
	if err = a.prot.build(ctx, cfg, a.store, opts.Auditor, opts.Now); err != nil {
		return nil, err
	}
	if err = a.mountAdminAudit(); err != nil {
		return nil, err
	}
	opts.Auditor = a.prot.auditor(opts.Auditor) // the detector and metrics see every event
	if a.keys, err = OpenKeys(ctx, cfg, a.store, log, opts.Auditor, opts.Now); err != nil {
		return nil, err
	}
	if a.trail != nil {
		a.trail.SetSigner(a.keys) // audit checkpoints are signed with the server's key
	}
	if a.tokens, err = token.NewIssuer(token.Options{
		Signer: a.keys, Verifier: a.keys, Issuer: cfg.Issuer,
		AccessTokenTTL: cfg.Tokens.AccessTokenTTL, IDTokenTTL: cfg.Tokens.IDTokenTTL, Now: opts.Now,
	}); err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	// Sender constraints (DPoP, client certificates) and the replay cache
	// shared by DPoP proofs and client assertions.
	if a.bnd, err = buildBinding(cfg, a.store, log, opts.Now); err != nil {
		return nil, fmt.Errorf("sender constraints: %w", err)
	}
	deps := peopleDeps{anomalies: a.prot.anomalyStore()}
	if a.auditSink != nil { // the access report, last use and console audit search
		deps.audit = a.auditSink
	}
	mux, err := buildMux(cfg, a.store, a.keys, a.tokens, a.bnd, opts.Auditor, log, opts.Now, a.prot, deps)
	if err != nil {
		return nil, err
	}
	a.handler = tlsconfig.HSTS(a.prot.wrap(mux))
	a.srv = newServer(a.handler, log)
	if a.mtlsLn != nil {
		a.mtlsSrv = newServer(tlsconfig.HSTS(mtlsHandler(cfg, mux)), log)
	}
	return a, nil
}

// newServer is an http.Server with fhirgate's timeouts and limits.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// MTLSURL returns the URL of the mTLS listener, or "" without one.
func (a *App) MTLSURL() string {
	if a.mtlsLn == nil {
		return ""
	}
	return "https://" + a.mtlsLn.Addr().String()
}

// CheckListener applies the transport rule: TLS when a certificate and key
// are configured; otherwise plain http only on a loopback address (with a
// warning), or anywhere with insecure_http_behind_proxy (with a louder one).
func CheckListener(cfg *config.Config, log *slog.Logger) error {
	switch {
	case cfg.TLSEnabled():
		return nil
	case cfg.ListensOnLoopback():
		log.Warn("serving plain http on a loopback address: for development only; configure tls.cert_file and tls.key_file for anything else", "addr", cfg.Addr)
		return nil
	case cfg.InsecureHTTPBehindProxy:
		log.Warn("INSECURE: serving plain http on a non-loopback address because insecure_http_behind_proxy is set; a TLS-terminating proxy must sit in front and the proxy-to-server link must be protected", "addr", cfg.Addr)
		return nil
	default:
		return fmt.Errorf("%w (addr %s)", ErrInsecureListener, cfg.Addr)
	}
}

// Handler returns the complete HTTP handler (for in-process tests).
func (a *App) Handler() http.Handler { return a.handler }

// Store returns the store the App uses.
func (a *App) Store() storage.Store { return a.store }

// Keys returns the signing-key manager.
func (a *App) Keys() *keys.Manager { return a.keys }

// Issuer returns the issuer URL, with the real port when addr used port 0.
func (a *App) Issuer() string { return a.cfg.Issuer }

// FHIRBase returns the FHIR base URL (the aud apps send).
func (a *App) FHIRBase() string { return a.cfg.FHIRBase }

// URL returns the URL the server listens on.
func (a *App) URL() string {
	scheme := "http"
	if a.cfg.TLSEnabled() {
		scheme = "https"
	}
	return scheme + "://" + a.ln.Addr().String()
}

// Start serves in the background and prints the ready line.
func (a *App) Start() {
	wctx, cancel := context.WithCancel(context.Background())
	a.stopWatch = cancel
	go a.keys.Schedule(wctx, a.keyReload) // reloads, and rotates on keys.rotation_period
	go func() { a.served <- a.srv.Serve(a.ln) }()
	a.prot.start()
	if a.mtlsSrv != nil {
		go func() { a.served <- a.mtlsSrv.Serve(a.mtlsLn) }()
		a.log.Info("serving mTLS endpoints", "url", a.MTLSURL(), "aliases", a.cfg.MTLSBaseURL())
	}
	fmt.Fprintf(a.ready, "fhirgate: serving on %s (issuer %s)\n", a.URL(), a.cfg.Issuer)
	a.log.Info("serving", "url", a.URL(), "issuer", a.cfg.Issuer, "fhir_base", a.cfg.FHIRBase, "storage", a.cfg.Storage.Driver)
}

// Shutdown stops accepting connections, waits for in-flight requests until
// ctx ends, then releases the store.
func (a *App) Shutdown(ctx context.Context) error {
	a.prot.draining()
	err := a.srv.Shutdown(ctx)
	if a.mtlsSrv != nil {
		err = errors.Join(err, a.mtlsSrv.Shutdown(ctx))
	}
	a.closeResources()
	return err
}

// Run starts the server and blocks until ctx ends or the server fails, then
// stops gracefully within ShutdownTimeout.
func (a *App) Run(ctx context.Context) error {
	a.Start()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-a.served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	a.log.Info("shutting down")
	if err := a.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}

func (a *App) closeResources() {
	a.closeOnce.Do(func() {
		if a.stopWatch != nil {
			a.stopWatch()
		}
		if a.ln != nil {
			_ = a.ln.Close()
		}
		if a.prot != nil {
			pctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
			if err := a.prot.close(pctx); err != nil {
				a.log.Warn("closing admin listener and detector", "err", err)
			}
			cancel()
		}
		if a.mtlsLn != nil {
			_ = a.mtlsLn.Close()
		}
		if a.bnd != nil {
			if err := a.bnd.close(); err != nil { // the replay cache's Redis client
				a.log.Warn("closing replay cache", "err", err)
			}
		}
		a.closeAudit() // flush the audit queue before the store goes
		if a.ownStore && a.store != nil {
			if err := a.store.Close(); err != nil {
				a.log.Warn("closing store", "err", err)
			}
		}
	})
}

// secureCookies reports whether browser cookies must be Secure: always,
// unless the issuer is plain http (only allowed on loopback).
func secureCookies(cfg *config.Config) bool {
	return !strings.HasPrefix(cfg.Issuer, "http://")
}
