package app

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/replay"
	replayredis "github.com/fhirgate/fhirgate/internal/replay/redis"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// binding holds what sender-constrained tokens need: the shared replay
// cache, the DPoP verifier and the trusted proxies for client certificates.
type binding struct {
	replay  replay.Cache
	dpop    *dpop.Verifier
	proxies mtls.TrustedProxies
	close   func() error
}

// buildBinding builds the replay cache (replay.backend), the DPoP verifier
// (dpop.*) and the trusted proxy list (mtls.*).
func buildBinding(cfg *config.Config, store storage.Store, log *slog.Logger, now func() time.Time) (*binding, error) {
	b := &binding{close: func() error { return nil }}
	switch cfg.Replay.Backend {
	case "memory":
		b.replay = replay.NewMemory(now, cfg.Replay.MaxEntries)
		log.Warn("replay cache in memory: DPoP proofs and client assertions are checked per node only")
	case "redis":
		opts, err := goredis.ParseURL(cfg.Replay.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("replay.redis_url: %w", err)
		}
		client := goredis.NewClient(opts)
		b.replay = replayredis.New(client, "fhirgate:replay:")
		b.close = client.Close
	default: // "store"
		b.replay = replay.FromStore(store, now)
	}
	v := &dpop.Verifier{Replay: b.replay, Now: now, IATWindow: cfg.DPoP.IATWindow, Algs: cfg.DPoPAlgs(),
		Aliases: mtlsAliases(cfg)}
	if cfg.DPoP.Nonce {
		key, err := cfg.DPoPNonceKey()
		if err != nil {
			return nil, fmt.Errorf("dpop.nonce_key: %w", err)
		}
		if v.Nonces, err = dpop.NewNonces(key, 0, now); err != nil {
			return nil, err
		}
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	b.dpop = v
	var err error
	if b.proxies, err = mtls.ParseTrustedProxies(cfg.MTLS.ClientCertHeader, cfg.TrustedProxyList()); err != nil {
		return nil, err
	}
	return b, nil
}

// gatewayDPoP is the gateway's proof verifier.
func (b *binding) gatewayDPoP() gateway.ProofVerifier {
	return dpop.GatewayVerifier{Verifier: b.dpop}
}

// mtlsAliases maps the public URL prefixes to those of the mTLS listener
// (mtlsHandler serves the same paths there), so a DPoP proof may name the
// URL a client of that listener called: the /token and /userinfo aliases
// and the FHIR base there. nil without mTLS.
func mtlsAliases(cfg *config.Config) map[string]string {
	base := cfg.MTLSBaseURL()
	if base == "" {
		return nil
	}
	aliases := map[string]string{cfg.Issuer: base}
	if cfg.GatewayEnabled() {
		if u, err := url.Parse(cfg.FHIRBase); err == nil {
			aliases[cfg.FHIRBase] = base + strings.TrimRight(u.Path, "/")
		}
	}
	return aliases
}
