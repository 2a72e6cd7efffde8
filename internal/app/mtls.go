package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/discovery"
	"github.com/fhirgate/fhirgate/internal/mtls"
)

// listenMTLS binds mtls.addr as a TLS listener that requests (and the
// handshake proves possession of) client certificates, with the server
// certificate and policy of base. Each client's certificate is then checked
// by its registered method. cfg learns the real port of ":0".
func listenMTLS(ctx context.Context, cfg *config.Config, base *tls.Config, now func() time.Time) (net.Listener, error) {
	if base == nil {
		return nil, fmt.Errorf("mtls.addr needs tls.cert_file and tls.key_file")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.MTLS.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on mtls.addr %s: %w", cfg.MTLS.Addr, err)
	}
	cfg.SetMTLSListenAddr(ln.Addr().String())
	return tls.NewListener(ln, mtls.ListenerConfig(base, now)), nil
}

// mtlsHandler serves on the mTLS listener only the endpoints advertised in
// mtls_endpoint_aliases and the FHIR API (certificate-bound tokens); pages,
// /authorize and metadata stay on the main listener (a browser is never
// asked for a certificate there).
func mtlsHandler(cfg *config.Config, main http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{discovery.PathToken, discovery.PathPAR, discovery.PathRevoke, discovery.PathIntrospect, discovery.PathUserinfo} {
		mux.Handle(p, main)
	}
	if cfg.GatewayEnabled() {
		if u, err := url.Parse(cfg.FHIRBase); err == nil {
			if p := strings.TrimRight(u.Path, "/"); p != "" {
				mux.Handle(p, main)
				mux.Handle(p+"/", main)
			} else {
				mux.Handle("/", main)
			}
		}
	}
	return mux
}
