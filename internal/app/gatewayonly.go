package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/cors"
	"github.com/fhirgate/fhirgate/internal/jwtverify"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// remoteFetchTimeout bounds one fetch from the remote issuer.
const remoteFetchTimeout = 5 * time.Second

// buildGatewayOnlyMux serves only the FHIR gateway, for a node running apart
// from the authorization server named by gateway.issuer: tokens are
// verified with that issuer's published keys (internal/jwtverify), its
// SMART configuration is relayed under the FHIR base, and revocation and
// CORS read the shared store.
func buildGatewayOnlyMux(cfg *config.Config, store storage.Store, km *keys.Manager, bnd *binding,
	auditor audit.Auditor, log *slog.Logger, now func() time.Time, prot *protection) (*http.ServeMux, error) {
	client := &http.Client{Timeout: remoteFetchTimeout}
	ks, err := jwtverify.New(jwtverify.Options{
		Issuer: cfg.Gateway.Issuer, JWKSURI: cfg.Gateway.JWKSURI, HTTPClient: client, Logger: log, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway.issuer: %w", err)
	}
	parser, err := jwtverify.NewParser(ks, now)
	if err != nil {
		return nil, fmt.Errorf("gateway.issuer: %w", err)
	}
	origins, err := cors.New(cors.Options{Clients: store, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("cors: %w", err)
	}
	smart := &remoteDoc{
		url: strings.TrimRight(cfg.Gateway.Issuer, "/") + "/.well-known/smart-configuration", issuer: cfg.Gateway.Issuer,
		client: client, ttl: 5 * time.Minute, now: now, log: log,
	}
	gw, err := buildGateway(cfg, store, km, parser, cfg.Gateway.Issuer, smart.get, origins, bnd, auditor, log, now, prot)
	if err != nil {
		return nil, err
	}
	if gw == nil {
		return nil, errors.New("gateway.issuer is set but no upstream is configured")
	}
	mux := http.NewServeMux()
	gw.Register(mux)
	log.Info("running the FHIR gateway only", "issuer", cfg.Gateway.Issuer, "fhir_base", cfg.FHIRBase)
	return mux, nil
}

// remoteDoc is a JSON document of the remote issuer, cached for ttl; the
// last good copy is served while a refresh fails.
type remoteDoc struct {
	url, issuer string
	client      *http.Client
	ttl         time.Duration
	now         func() time.Time
	log         *slog.Logger

	mu      sync.Mutex
	body    []byte
	fetched time.Time
}

func (d *remoteDoc) get() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.body != nil && now.Sub(d.fetched) < d.ttl {
		return d.body, nil
	}
	b, err := d.fetch()
	if err != nil {
		if d.body != nil {
			d.log.Warn("gateway: refreshing the issuer's SMART configuration failed; serving the last copy", "error", err)
			d.fetched = now // retry after another ttl
			return d.body, nil
		}
		return nil, err
	}
	d.body, d.fetched = b, now
	return b, nil
}

func (d *remoteDoc) fetch() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), remoteFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("smart configuration: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("smart configuration: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil {
		return nil, fmt.Errorf("smart configuration: %w", err)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("smart configuration: %w", err)
	}
	if doc.Issuer != d.issuer {
		return nil, fmt.Errorf("smart configuration names issuer %q, want %q", doc.Issuer, d.issuer)
	}
	return b, nil
}
