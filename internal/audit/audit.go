// Package audit defines the security audit event and the Auditor every
// feature reports to. LogAuditor writes events to a structured log; the
// durable, hash-chained trail (package audit/trail with its sinks) plugs in
// behind the same interface.
package audit

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Outcome is whether the audited act succeeded.
type Outcome string

// Outcomes.
const (
	Success Outcome = "success"
	Failure Outcome = "failure"
)

// Action names a security-relevant act.
type Action string

// Actions recorded by the authorization server.
const (
	ActionLogin               Action = "login"
	ActionLockout             Action = "lockout"
	ActionLogout              Action = "logout"
	ActionAuthorize           Action = "authorize"
	ActionConsentGranted      Action = "consent.granted"
	ActionConsentDenied       Action = "consent.denied"
	ActionConsentRevoked      Action = "consent.revoked"
	ActionCodeIssued          Action = "code.issued"
	ActionCodeReuse           Action = "code.reuse"
	ActionTokenIssued         Action = "token.issued"
	ActionTokenRefreshed      Action = "token.refreshed"
	ActionTokenRefused        Action = "token.refused"
	ActionRefreshReuse        Action = "refresh.reuse"
	ActionUserinfo            Action = "userinfo"
	ActionClientRegistered    Action = "client.registered"
	ActionClientChanged       Action = "client.changed"
	ActionClientDeleted       Action = "client.deleted"
	ActionKeyRotated          Action = "key.rotated"
	ActionLaunchCreated       Action = "launch.created"
	ActionRegistrationRefused Action = "registration.refused"
	ActionTokenRevoked        Action = "token.revoked"
	ActionTokenIntrospected   Action = "token.introspected"
	ActionReplayDetected      Action = "replay.detected"
	ActionAnomaly             Action = "anomaly"
	ActionSuspended           Action = "suspended"
	ActionAuditExport         Action = "audit.export"
	ActionAuditQuery          Action = "audit.query"
)

// Actions recorded by the FHIR gateway (package gateway re-exports them
// under the same names).
//
// A read-only request (read, vread, search, history, capabilities) whose
// token or request names its patient is recorded once: its fhir.request
// event is written after the upstream answered and before the answer is
// sent, and its Reason ends in "; HTTP <status>" (WithStatus), the status
// the client got; Outcome is Failure from 400 on. Every other forwarded
// request gets a write-ahead fhir.request (no status) and, once answered, a
// fhir.response.
const (
	ActionFHIRRequest  Action = "fhir.request"
	ActionFHIRFiltered Action = "fhir.filtered"
	ActionTokenLeaked  Action = "token.leaked"
	// ActionFHIRResponse records the status a forwarded request's client
	// got (Reason "HTTP 200"; Success below 400), after its fhir.request.
	ActionFHIRResponse Action = "fhir.response"
)

// statusMark separates a gateway event's reason from the HTTP status the
// client got.
const statusMark = "; HTTP "

// WithStatus appends the HTTP status a client got to a gateway event's
// reason ("read Observation/1; HTTP 200").
func WithStatus(reason string, status int) string {
	return reason + statusMark + strconv.Itoa(status)
}

// ResponseStatus returns the HTTP status WithStatus put at the end of
// reason, if there is one.
func ResponseStatus(reason string) (int, bool) {
	i := strings.LastIndex(reason, statusMark)
	if i < 0 {
		return 0, false
	}
	s := reason[i+len(statusMark):]
	if len(s) != 3 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 {
		return 0, false
	}
	return n, true
}

// Binding is how an access token is bound to its client.
type Binding string

// Token bindings.
const (
	BindingNone Binding = "none"
	BindingDPoP Binding = "dpop"
	BindingMTLS Binding = "mtls"
)

// Event is one audit record. It never holds a token, secret, password or
// resource content: only identifiers and the reason for a refusal.
type Event struct {
	Time      time.Time
	Action    Action
	Outcome   Outcome
	Reason    string // why it was refused (an OAuth error code and description)
	UserID    string // the user's sub
	FHIRUser  string
	ClientID  string
	SourceIP  string
	UserAgent string
	Patient   string // patient compartment touched, if any
	Scope     string // granted scopes
	TokenID   string // jti of the token involved, never the token
	RequestID string

	// What was accessed (gateway events).
	Interaction     string // FHIR interaction: read, vread, search-type, create, ...
	ResourceType    string
	ResourceID      string
	EntriesFiltered int // search or bundle entries withheld by the compartment filter

	// Under which permissions.
	AllowedBy string  // the granted scope that allowed the request
	Binding   Binding // none, dpop or mtls
}

// Auditor records events. Record returns an error when the event could not
// be kept; callers on a path that discloses data must then refuse (fail closed).
type Auditor interface {
	Record(ctx context.Context, e Event) error
}

// Enqueuer is an Auditor that can also take an event without waiting for it
// to become durable. It is for events recorded after the data they concern
// was disclosed (a forwarded response's outcome), where waiting protects
// nothing and only delays the response.
type Enqueuer interface {
	Enqueue(ctx context.Context, e Event) error
}

// Enqueue hands e to a without waiting for durability when a can do that,
// and records it as usual otherwise. Never use it for an event that must be
// durable before data is disclosed.
func Enqueue(ctx context.Context, a Auditor, e Event) error {
	if q, ok := a.(Enqueuer); ok {
		return q.Enqueue(ctx, e)
	}
	return a.Record(ctx, e)
}

// LogAuditor writes each event as one structured log line.
type LogAuditor struct {
	Logger *slog.Logger
	Now    func() time.Time
}

// Record implements Auditor.
func (a LogAuditor) Record(ctx context.Context, e Event) error {
	if e.Time.IsZero() && a.Now != nil {
		e.Time = a.Now()
	}
	a.Logger.LogAttrs(ctx, slog.LevelInfo, "audit",
		slog.Time("time", e.Time),
		slog.String("action", string(e.Action)),
		slog.String("outcome", string(e.Outcome)),
		slog.String("reason", e.Reason),
		slog.String("user", e.UserID),
		slog.String("fhir_user", e.FHIRUser),
		slog.String("client_id", e.ClientID),
		slog.String("source_ip", e.SourceIP),
		slog.String("patient", e.Patient),
		slog.String("scope", e.Scope),
		slog.String("jti", e.TokenID),
		slog.String("request_id", e.RequestID),
		slog.String("interaction", e.Interaction),
		slog.String("resource_type", e.ResourceType),
		slog.String("resource_id", e.ResourceID),
		slog.Int("entries_filtered", e.EntriesFiltered),
		slog.String("allowed_by", e.AllowedBy),
		slog.String("binding", string(e.Binding)),
	)
	return nil
}
