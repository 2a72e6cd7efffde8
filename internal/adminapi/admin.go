package adminapi

import (
	"context"
	"crypto/x509"
	"log/slog"
	"slices"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/metrics"
)

// Audit actions.
const (
	// ActionAdminAccess is a request to the admin API: Failure when refused.
	ActionAdminAccess audit.Action = "admin.access"
)

// Anomalies is what the admin API needs of the anomaly detector.
type Anomalies interface {
	List(ctx context.Context, opts anomaly.ListOptions) ([]anomaly.Anomaly, error)
	Clear(ctx context.Context, id, by string) (*anomaly.Anomaly, error)
	ClearSubject(ctx context.Context, s anomaly.Subject, by string) ([]anomaly.Anomaly, error)
}

// Options configure New.
type Options struct {
	// Tokens holds the admin tokens (nil: token authentication is off).
	Tokens TokenStore
	// AllowClientCerts admits requests with a client certificate the admin
	// listener verified against its client CAs.
	AllowClientCerts bool
	// CertSubjects, when not empty, limits certificate admission to these
	// subject common names.
	CertSubjects []string
	// Metrics is served at /metrics (optional).
	Metrics *metrics.Registry
	// Anomalies backs /admin/anomalies (optional).
	Anomalies Anomalies
	Auditor   audit.Auditor
	Logger    *slog.Logger
	Now       func() time.Time
}

// Principal is who an admin request was admitted as: "token:<name>/<id>"
// or "cert:<subject CN>".
type Principal string

// certPrincipal admits a verified client certificate chain.
func (o *Options) certPrincipal(chains [][]*x509.Certificate) (Principal, bool) {
	if !o.AllowClientCerts || len(chains) == 0 || len(chains[0]) == 0 {
		return "", false
	}
	leaf := chains[0][0]
	if len(o.CertSubjects) > 0 && !slices.Contains(o.CertSubjects, leaf.Subject.CommonName) {
		return "", false
	}
	return Principal("cert:" + leaf.Subject.CommonName), true
}
