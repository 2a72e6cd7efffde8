package app

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/fhirgate/fhirgate/internal/account"
	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/export"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/console"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// people is the people's side: the second factor, the account pages and
// the admin console.
type people struct {
	mfa     *mfa.Service
	require []storage.Role
	mfaH    *mfa.Handler
	account *account.Handler
	console *console.Handler
}

// peopleDeps are the optional parts: the queryable audit trail (access
// report, last use, console search) and the anomaly store.
type peopleDeps struct {
	audit     export.Querier
	anomalies anomaly.Store
}

func newPeople(cfg *config.Config, store storage.Store, km *keys.Manager, sessions *session.Manager,
	authn *session.Authenticator, deps peopleDeps, auditor audit.Auditor, log *slog.Logger, now func() time.Time) (*people, error) {
	kek, err := KEK(cfg)
	if err != nil {
		return nil, err
	}
	p := &people{}
	for _, r := range cfg.Login.RequireMFAFor.Roles() {
		p.require = append(p.require, storage.Role(r))
	}
	p.mfa, err = mfa.New(mfa.Options{Store: store, KEK: kek, Enrolment: mfa.Enrolment(cfg.Login.MFAEnrolment),
		Auditor: auditor, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	p.mfaH, err = mfa.NewHandler(mfa.HandlerOptions{Service: p.mfa, Sessions: sessions, Users: store,
		MaxFailures: cfg.Login.MaxFailures, LockFor: cfg.Login.Lockout, RequireFor: p.require,
		Auditor: auditor, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("mfa pages: %w", err)
	}
	p.account, err = account.New(account.Options{Sessions: sessions, Authenticator: authn, Users: store, Clients: store,
		Apps: store, Consents: store, MFA: p.mfa, RequireMFAFor: p.require, Audit: deps.audit,
		Auditor: auditor, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("account pages: %w", err)
	}
	if !cfg.Admin.PublicConsole {
		return p, nil // admin.public_console: false
	}
	p.console, err = console.New(console.Options{Sessions: sessions, Users: store, Clients: store, MFA: p.mfa,
		UserSessions: store, Families: store,
		Audit: deps.audit, Anomalies: deps.anomalies, Keys: km, Auditor: auditor, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return p, nil
}

func (p *people) register(mux *http.ServeMux) {
	p.mfaH.Register(mux)
	p.account.Register(mux)
	if p.console != nil {
		p.console.Register(mux)
	}
}
