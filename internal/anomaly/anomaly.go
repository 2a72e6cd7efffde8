// Package anomaly is fhirgate's suspicious-activity detector. It watches
// each client, user and source address over sliding windows and raises an
// Anomaly for: a request rate far above the client's own recent baseline,
// one user touching an unusual number of distinct patients within an hour
// (scraping), a burst of 401/403 refusals, refresh-token reuse, DPoP proof
// or client assertion replay, and an access token seen in a URL.
//
// Each rule has an action from config: record only, throttle (the subject
// gets the rate limiter's throttle budget for a while) or suspend (the
// subject's tokens fail at the gateway and /token until an admin clears
// it). Every anomaly is stored, audited, counted and optionally POSTed to a
// webhook signed with HMAC-SHA256; the audit write and the webhook run in
// the background and never block a request.
package anomaly

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// Rule names a detection rule.
type Rule string

// Rules.
const (
	RuleRateSpike       Rule = "rate_spike"
	RulePatientScraping Rule = "patient_scraping"
	RuleAuthFailures    Rule = "auth_failures"
	RuleRefreshReuse    Rule = "refresh_reuse"
	RuleReplay          Rule = "replay"
	RuleTokenInURL      Rule = "token_in_url"
)

// Rules lists every rule.
var Rules = []Rule{RuleRateSpike, RulePatientScraping, RuleAuthFailures, RuleRefreshReuse, RuleReplay, RuleTokenInURL}

// Action is what raising an anomaly does to its subject.
type Action string

// Actions, weakest first.
const (
	ActionRecord   Action = "record"
	ActionThrottle Action = "throttle"
	ActionSuspend  Action = "suspend"
)

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	return a == ActionRecord || a == ActionThrottle || a == ActionSuspend
}

func (a Action) strength() int {
	switch a {
	case ActionThrottle:
		return 1
	case ActionSuspend:
		return 2
	}
	return 0
}

// SubjectKind is what an anomaly is about.
type SubjectKind string

// Subject kinds.
const (
	SubjectClient SubjectKind = "client"
	SubjectUser   SubjectKind = "user"
	SubjectIP     SubjectKind = "ip"
)

// Subject is the client, user or source address an anomaly is about, and
// the one its action applies to.
type Subject struct {
	Kind SubjectKind `json:"kind"`
	ID   string      `json:"id"`
}

// String renders s as "kind:id".
func (s Subject) String() string { return string(s.Kind) + ":" + s.ID }

// Anomaly is one raised anomaly.
type Anomaly struct {
	ID       string    `json:"id"`
	Rule     Rule      `json:"rule"`
	Action   Action    `json:"action"`
	Subject  Subject   `json:"subject"`
	ClientID string    `json:"client_id,omitempty"`
	UserID   string    `json:"user_id,omitempty"`
	IP       string    `json:"ip,omitempty"`
	Detail   string    `json:"detail"` // what was seen; never a token or secret
	RaisedAt time.Time `json:"raised_at"`
	// Until ends a throttle or suspension; zero means until cleared.
	Until     time.Time `json:"until,omitzero"`
	ClearedAt time.Time `json:"cleared_at,omitzero"`
	ClearedBy string    `json:"cleared_by,omitempty"`
}

// Active reports whether a's throttle or suspension is in force at now.
func (a Anomaly) Active(now time.Time) bool {
	return a.Action != ActionRecord && a.ClearedAt.IsZero() && (a.Until.IsZero() || now.Before(a.Until))
}

// DefaultRetention is how long a store keeps an anomaly that can no longer
// be in force (a record, a cleared one, an expired throttle or suspension),
// counted from when it ended. Each anomaly is an audit event too, so the
// audit trail keeps the history beyond it.
const DefaultRetention = 30 * 24 * time.Hour

// ErrNotFound reports an unknown anomaly id.
var ErrNotFound = errors.New("anomaly: not found")

// ListOptions filter Store.List.
type ListOptions struct {
	// IncludeCleared also lists cleared anomalies.
	IncludeCleared bool
	// Subject, when set, lists only anomalies about it.
	Subject Subject
	// Limit bounds the answer (newest first); 0 means DefaultListLimit.
	Limit int
}

// DefaultListLimit bounds Store.List when ListOptions.Limit is zero.
const DefaultListLimit = 500

// Store keeps anomalies and so the throttles and suspensions in force.
// Implementations are safe for concurrent use.
type Store interface {
	// Add stores a new anomaly.
	Add(ctx context.Context, a *Anomaly) error
	// List returns anomalies, newest first.
	List(ctx context.Context, opts ListOptions) ([]Anomaly, error)
	// Active returns every anomaly whose action is in force at now.
	Active(ctx context.Context, now time.Time) ([]Anomaly, error)
	// Clear marks the anomaly id cleared by by at now (ErrNotFound if
	// unknown) and returns it.
	Clear(ctx context.Context, id, by string, now time.Time) (*Anomaly, error)
	// ClearSubject clears every uncleared anomaly about s and returns them.
	ClearSubject(ctx context.Context, s Subject, by string, now time.Time) ([]Anomaly, error)
}

// Audit actions.
const (
	AuditRaised  audit.Action = "anomaly.raised"
	AuditCleared audit.Action = "anomaly.cleared"
)

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("anomaly: invalid config")

// RateSpikeConfig: a client's requests in the last Window exceed Factor
// times its average per Window over the preceding Baseline, and at least
// MinRequests. Clients seen for less than MinHistory are not judged.
type RateSpikeConfig struct {
	Action      Action        `yaml:"action" json:"action"`
	Window      time.Duration `yaml:"window" json:"window"`
	Baseline    time.Duration `yaml:"baseline" json:"baseline"`
	Factor      float64       `yaml:"factor" json:"factor"`
	MinRequests int           `yaml:"min_requests" json:"min_requests"`
	MinHistory  time.Duration `yaml:"min_history" json:"min_history"`
}

// ScrapingConfig: one user touches more than MaxPatients distinct patients
// within Window.
type ScrapingConfig struct {
	Action      Action        `yaml:"action" json:"action"`
	Window      time.Duration `yaml:"window" json:"window"`
	MaxPatients int           `yaml:"max_patients" json:"max_patients"`
}

// AuthFailuresConfig: at least Max 401/403 answers to one client (or, for
// requests without a known client, one source address) within Window.
type AuthFailuresConfig struct {
	Action Action        `yaml:"action" json:"action"`
	Window time.Duration `yaml:"window" json:"window"`
	Max    int           `yaml:"max" json:"max"`
}

// EventConfig is a rule raised by a single event.
type EventConfig struct {
	Action Action `yaml:"action" json:"action"`
}

// Config is the detector's configuration.
type Config struct {
	RateSpike    RateSpikeConfig    `yaml:"rate_spike" json:"rate_spike"`
	Scraping     ScrapingConfig     `yaml:"patient_scraping" json:"patient_scraping"`
	AuthFailures AuthFailuresConfig `yaml:"auth_failures" json:"auth_failures"`
	RefreshReuse EventConfig        `yaml:"refresh_reuse" json:"refresh_reuse"`
	Replay       EventConfig        `yaml:"replay" json:"replay"`
	TokenInURL   EventConfig        `yaml:"token_in_url" json:"token_in_url"`
	// ThrottleFor is how long a throttle lasts (DefaultThrottleFor when zero).
	ThrottleFor time.Duration `yaml:"throttle_for" json:"throttle_for"`
	// SuspendFor is how long a suspension lasts; zero means until an admin
	// clears it.
	SuspendFor time.Duration `yaml:"suspend_for" json:"suspend_for"`
}

// Defaults.
const (
	DefaultThrottleFor = 15 * time.Minute
)

// DefaultConfig is the configuration used for zero fields: every rule on,
// the rate-based ones throttling, the others recording (suspension is
// something a deployment opts into).
func DefaultConfig() Config {
	return Config{
		RateSpike: RateSpikeConfig{Action: ActionThrottle, Window: time.Minute, Baseline: time.Hour,
			Factor: 10, MinRequests: 300, MinHistory: 10 * time.Minute},
		Scraping:     ScrapingConfig{Action: ActionRecord, Window: time.Hour, MaxPatients: 100},
		AuthFailures: AuthFailuresConfig{Action: ActionThrottle, Window: time.Minute, Max: 30},
		RefreshReuse: EventConfig{Action: ActionRecord},
		Replay:       EventConfig{Action: ActionRecord},
		TokenInURL:   EventConfig{Action: ActionRecord},
		ThrottleFor:  DefaultThrottleFor,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(a *Action, def Action) {
		if *a == "" {
			*a = def
		}
	}
	set(&c.RateSpike.Action, d.RateSpike.Action)
	set(&c.Scraping.Action, d.Scraping.Action)
	set(&c.AuthFailures.Action, d.AuthFailures.Action)
	set(&c.RefreshReuse.Action, d.RefreshReuse.Action)
	set(&c.Replay.Action, d.Replay.Action)
	set(&c.TokenInURL.Action, d.TokenInURL.Action)
	if c.RateSpike.Window <= 0 {
		c.RateSpike.Window = d.RateSpike.Window
	}
	if c.RateSpike.Baseline <= 0 {
		c.RateSpike.Baseline = d.RateSpike.Baseline
	}
	if c.RateSpike.Factor <= 0 {
		c.RateSpike.Factor = d.RateSpike.Factor
	}
	if c.RateSpike.MinRequests <= 0 {
		c.RateSpike.MinRequests = d.RateSpike.MinRequests
	}
	if c.RateSpike.MinHistory <= 0 {
		c.RateSpike.MinHistory = d.RateSpike.MinHistory
	}
	if c.Scraping.Window <= 0 {
		c.Scraping.Window = d.Scraping.Window
	}
	if c.Scraping.MaxPatients <= 0 {
		c.Scraping.MaxPatients = d.Scraping.MaxPatients
	}
	if c.AuthFailures.Window <= 0 {
		c.AuthFailures.Window = d.AuthFailures.Window
	}
	if c.AuthFailures.Max <= 0 {
		c.AuthFailures.Max = d.AuthFailures.Max
	}
	if c.ThrottleFor <= 0 {
		c.ThrottleFor = d.ThrottleFor
	}
	return c
}

// Validate reports every unusable setting (zero values take defaults).
func (c Config) Validate() error {
	var errs []error
	for r, a := range map[Rule]Action{
		RuleRateSpike: c.RateSpike.Action, RulePatientScraping: c.Scraping.Action,
		RuleAuthFailures: c.AuthFailures.Action, RuleRefreshReuse: c.RefreshReuse.Action,
		RuleReplay: c.Replay.Action, RuleTokenInURL: c.TokenInURL.Action,
	} {
		if a != "" && !a.Valid() {
			errs = append(errs, fmt.Errorf("%w: %s.action must be record, throttle or suspend, got %q", ErrConfig, r, a))
		}
	}
	if c.RateSpike.Factor < 0 || (c.RateSpike.Factor > 0 && c.RateSpike.Factor <= 1) {
		errs = append(errs, fmt.Errorf("%w: rate_spike.factor must be above 1", ErrConfig))
	}
	if c.RateSpike.Window > 0 && c.RateSpike.Baseline > 0 && c.RateSpike.Baseline < c.RateSpike.Window {
		errs = append(errs, fmt.Errorf("%w: rate_spike.baseline must be at least rate_spike.window", ErrConfig))
	}
	if c.SuspendFor < 0 || c.ThrottleFor < 0 {
		errs = append(errs, fmt.Errorf("%w: throttle_for and suspend_for must not be negative", ErrConfig))
	}
	return errors.Join(errs...)
}

func (c Config) action(r Rule) Action {
	switch r {
	case RuleRateSpike:
		return c.RateSpike.Action
	case RulePatientScraping:
		return c.Scraping.Action
	case RuleAuthFailures:
		return c.AuthFailures.Action
	case RuleRefreshReuse:
		return c.RefreshReuse.Action
	case RuleReplay:
		return c.Replay.Action
	case RuleTokenInURL:
		return c.TokenInURL.Action
	}
	return ActionRecord
}
