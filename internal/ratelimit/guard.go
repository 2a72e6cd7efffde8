package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// Endpoint names a rate-limited entry point.
type Endpoint string

// Endpoints fhirgate limits.
const (
	EndpointLogin     Endpoint = "login"     // the login form post
	EndpointToken     Endpoint = "token"     // POST /token
	EndpointAuthorize Endpoint = "authorize" // /authorize
	EndpointGateway   Endpoint = "gateway"   // the FHIR API
)

// Dimension is what a bucket counts: a source IP, a client or a user.
type Dimension string

// Dimensions.
const (
	ByIP     Dimension = "ip"
	ByClient Dimension = "client"
	ByUser   Dimension = "user"
	// ByThrottle is the reduced budget of a client or user the anomaly
	// detector throttles.
	ByThrottle Dimension = "throttle"
)

// Rates are one endpoint's budgets; zero Rates are unlimited.
type Rates struct {
	IP     Rate `yaml:"ip" json:"ip"`
	Client Rate `yaml:"client" json:"client"`
	User   Rate `yaml:"user" json:"user"`
}

// Policy is the rate-limit configuration: budgets per endpoint, per-client
// overrides of the client budget, and the throttle budget.
type Policy struct {
	Endpoints map[Endpoint]Rates `yaml:"endpoints" json:"endpoints"`
	// ClientOverrides replaces the per-client budget of the named clients
	// at every endpoint.
	ClientOverrides map[string]Rate `yaml:"client_overrides" json:"client_overrides"`
	// Throttle is the budget of a throttled client or user.
	Throttle Rate `yaml:"throttle" json:"throttle"`
}

// Validate reports every unusable rate in p.
func (p Policy) Validate() error {
	var errs []error
	eps := make([]string, 0, len(p.Endpoints))
	for e := range p.Endpoints {
		eps = append(eps, string(e))
	}
	sort.Strings(eps)
	for _, e := range eps {
		r := p.Endpoints[Endpoint(e)]
		for _, x := range []struct {
			d Dimension
			r Rate
		}{{ByIP, r.IP}, {ByClient, r.Client}, {ByUser, r.User}} {
			if err := x.r.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("endpoint %s %s: %w", e, x.d, err))
			}
		}
	}
	for c, r := range p.ClientOverrides {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("client override %q: %w", c, err))
		}
	}
	if err := p.Throttle.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("throttle: %w", err))
	}
	return errors.Join(errs...)
}

// Subject is who makes a request; empty fields are not limited.
type Subject struct {
	IP       string
	ClientID string
	UserID   string
	// Throttled marks a subject the anomaly detector throttles: it also
	// gets the Policy's Throttle budget.
	Throttled bool
}

// Result is a Guard's answer: the Decision of the bucket that refused (or
// of the last one checked), and which dimension it counts.
type Result struct {
	Decision
	Dimension Dimension
}

// Guard applies a Policy with a Limiter.
type Guard struct {
	limiter Limiter
	policy  Policy
}

// NewGuard returns a Guard enforcing p with l.
func NewGuard(l Limiter, p Policy) (*Guard, error) {
	if l == nil {
		return nil, errors.New("ratelimit: nil limiter")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Guard{limiter: l, policy: p}, nil
}

// Check takes a token from each bucket that applies to s at e: per IP,
// per client (or its override), per user, and the throttle budget. It
// stops at the first refusal. An error comes from the limiter backend; the
// Result then says whether to proceed (fail open) or not (fail closed).
func (g *Guard) Check(ctx context.Context, e Endpoint, s Subject) (Result, error) {
	if g == nil {
		return Result{Decision: Decision{Allowed: true}}, nil
	}
	rates := g.policy.Endpoints[e]
	clientRate := rates.Client
	if o, ok := g.policy.ClientOverrides[s.ClientID]; ok && s.ClientID != "" {
		clientRate = o
	}
	type check struct {
		d   Dimension
		id  string
		key string
		r   Rate
	}
	checks := [...]check{
		{ByIP, s.IP, Key(string(e)+":ip", s.IP), rates.IP},
		{ByClient, s.ClientID, Key(string(e)+":client", s.ClientID), clientRate},
		{ByUser, s.UserID, Key(string(e)+":user", s.UserID), rates.User},
		{ByThrottle, throttleID(s), Key("throttle", throttleID(s)), g.policy.Throttle},
	}
	res := Result{Decision: Decision{Allowed: true, Limit: -1, Remaining: -1}}
	for _, c := range checks {
		if c.id == "" || c.r.Unlimited() || (c.d == ByThrottle && !s.Throttled) {
			continue
		}
		d, err := g.limiter.Allow(ctx, c.key, c.r)
		res = Result{Decision: d, Dimension: c.d}
		if err != nil || !d.Allowed {
			return res, err
		}
	}
	return res, nil
}

func throttleID(s Subject) string {
	switch {
	case s.ClientID != "" && s.UserID != "":
		return "client:" + s.ClientID + ":user:" + s.UserID
	case s.ClientID != "":
		return "client:" + s.ClientID
	case s.UserID != "":
		return "user:" + s.UserID
	case s.IP != "":
		return "ip:" + s.IP
	}
	return ""
}
