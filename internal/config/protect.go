package config

import (
	"net"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

// Admin configures the admin listener (metrics, anomalies and the other
// admin APIs), which never shares the public address.
type Admin struct {
	Addr         string `yaml:"addr" env:"FHIRGATE_ADMIN_ADDR" doc:"admin API listen address host:port (metrics, anomalies); empty = no admin listener"`
	TokensFile   string `yaml:"tokens_file" env:"FHIRGATE_ADMIN_TOKENS_FILE" doc:"file of hashed admin tokens written by fhirgate admin token; empty = <data_dir>/admin-tokens.json"`
	ClientCAFile string `yaml:"client_ca_file" env:"FHIRGATE_ADMIN_CLIENT_CA_FILE" doc:"PEM CA certificates whose client certificates may use the admin API (mTLS; needs tls.cert_file)"`
	CertSubjects string `yaml:"cert_subjects" env:"FHIRGATE_ADMIN_CERT_SUBJECTS" doc:"comma-separated client certificate common names admitted; empty = any certificate from client_ca_file"`
	// PublicConsole serves the admin console pages on the public listener.
	PublicConsole bool `yaml:"public_console" env:"FHIRGATE_ADMIN_PUBLIC_CONSOLE" doc:"serve the admin console pages (/console: admin role and a second factor) on the public listener; false = no admin page or route on the public listener"`
}

// RateLimit configures the token buckets. Rates are written "N/duration"
// with an optional " burst B" ("600/1m burst 900"); empty or "off" is unlimited.
type RateLimit struct {
	Backend          string `yaml:"backend" env:"FHIRGATE_RATELIMIT_BACKEND" doc:"memory (per node) or redis (shared by every node)"`
	RedisURL         string `yaml:"redis_url" env:"FHIRGATE_RATELIMIT_REDIS_URL" doc:"redis://[:password@]host:port[/db] for the redis backend" secret:"true"`
	RedisPrefix      string `yaml:"redis_prefix" env:"FHIRGATE_RATELIMIT_REDIS_PREFIX" doc:"prefix of the limiter's Redis keys (one per deployment sharing a Redis)"`
	FailOpen         bool   `yaml:"fail_open" env:"FHIRGATE_RATELIMIT_FAIL_OPEN" doc:"when Redis is unreachable: true = per-node limits, false = refuse with 503"`
	LoginPerIP       string `yaml:"login_per_ip" env:"FHIRGATE_RATELIMIT_LOGIN_PER_IP" doc:"login form posts per source address"`
	AuthorizePerIP   string `yaml:"authorize_per_ip" env:"FHIRGATE_RATELIMIT_AUTHORIZE_PER_IP" doc:"/authorize requests per source address"`
	TokenPerIP       string `yaml:"token_per_ip" env:"FHIRGATE_RATELIMIT_TOKEN_PER_IP" doc:"/token requests per source address"`
	GatewayPerIP     string `yaml:"gateway_per_ip" env:"FHIRGATE_RATELIMIT_GATEWAY_PER_IP" doc:"FHIR API requests per source address"`
	GatewayPerClient string `yaml:"gateway_per_client" env:"FHIRGATE_RATELIMIT_GATEWAY_PER_CLIENT" doc:"FHIR API requests per client"`
	GatewayPerUser   string `yaml:"gateway_per_user" env:"FHIRGATE_RATELIMIT_GATEWAY_PER_USER" doc:"FHIR API requests per user"`
	ClientOverrides  string `yaml:"client_overrides" env:"FHIRGATE_RATELIMIT_CLIENT_OVERRIDES" doc:"per-client FHIR API rates: client_id=rate, comma-separated"`
	Throttle         string `yaml:"throttle" env:"FHIRGATE_RATELIMIT_THROTTLE" doc:"rate of a client or user the anomaly detector throttles"`
}

// Anomaly configures the suspicious-activity detector. Actions are
// record, throttle or suspend.
type Anomaly struct {
	Enabled              bool          `yaml:"enabled" env:"FHIRGATE_ANOMALY_ENABLED" doc:"run the suspicious-activity detector"`
	Store                string        `yaml:"store" env:"FHIRGATE_ANOMALY_STORE" doc:"store (the main store: the SQLite file or PostgreSQL per storage.driver; kept across restarts, shared by nodes on PostgreSQL), memory (per node, lost on restart) or redis (shared by every node, kept across restarts; uses ratelimit.redis_url)"`
	RateSpikeAction      string        `yaml:"rate_spike_action" env:"FHIRGATE_ANOMALY_RATE_SPIKE_ACTION" doc:"action when a client's rate is far above its own baseline"`
	RateSpikeFactor      int           `yaml:"rate_spike_factor" env:"FHIRGATE_ANOMALY_RATE_SPIKE_FACTOR" doc:"how many times its baseline per minute a client's rate must exceed"`
	RateSpikeMinRequests int           `yaml:"rate_spike_min_requests" env:"FHIRGATE_ANOMALY_RATE_SPIKE_MIN_REQUESTS" doc:"requests per minute below which no spike is raised"`
	ScrapingAction       string        `yaml:"patient_scraping_action" env:"FHIRGATE_ANOMALY_PATIENT_SCRAPING_ACTION" doc:"action when a user touches too many distinct patients in an hour"`
	ScrapingMaxPatients  int           `yaml:"patient_scraping_max" env:"FHIRGATE_ANOMALY_PATIENT_SCRAPING_MAX" doc:"distinct patients per user per hour before an anomaly"`
	AuthFailuresAction   string        `yaml:"auth_failures_action" env:"FHIRGATE_ANOMALY_AUTH_FAILURES_ACTION" doc:"action on a burst of 401/403 refusals"`
	AuthFailuresMax      int           `yaml:"auth_failures_max" env:"FHIRGATE_ANOMALY_AUTH_FAILURES_MAX" doc:"401/403 refusals per minute (per client, or per address) before an anomaly"`
	RefreshReuseAction   string        `yaml:"refresh_reuse_action" env:"FHIRGATE_ANOMALY_REFRESH_REUSE_ACTION" doc:"action on refresh-token or authorization-code reuse"`
	ReplayAction         string        `yaml:"replay_action" env:"FHIRGATE_ANOMALY_REPLAY_ACTION" doc:"action on a replayed DPoP proof or client assertion"`
	TokenInURLAction     string        `yaml:"token_in_url_action" env:"FHIRGATE_ANOMALY_TOKEN_IN_URL_ACTION" doc:"action when an access token is seen in a URL"`
	ThrottleFor          time.Duration `yaml:"throttle_for" env:"FHIRGATE_ANOMALY_THROTTLE_FOR" doc:"how long a throttle lasts"`
	SuspendFor           time.Duration `yaml:"suspend_for" env:"FHIRGATE_ANOMALY_SUSPEND_FOR" doc:"how long a suspension lasts; 0 = until an admin clears it"`
	WebhookURL           string        `yaml:"webhook_url" env:"FHIRGATE_ANOMALY_WEBHOOK_URL" doc:"https URL receiving each anomaly as a signed JSON POST"`
	WebhookSecret        string        `yaml:"webhook_secret" env:"FHIRGATE_ANOMALY_WEBHOOK_SECRET" doc:"HMAC-SHA256 key of the webhook signature (at least 32 characters)" secret:"true"`
}

// Defaults of the admin, rate-limit and anomaly sections.
const (
	DefaultRateLimitBackend = "memory"
	DefaultLoginPerIP       = "10/1m burst 20"
	DefaultAuthorizePerIP   = "120/1m"
	DefaultTokenPerIP       = "120/1m"
	DefaultGatewayPerClient = "3000/1m"
	DefaultGatewayPerUser   = "1200/1m"
	DefaultThrottle         = "30/1m"
	// DefaultAnomalyStore keeps anomalies in the main store, so that a
	// restart does not lift a suspension.
	DefaultAnomalyStore = "store"
)

// DefaultRateLimit returns the rate-limit defaults.
func DefaultRateLimit() RateLimit {
	return RateLimit{
		Backend: DefaultRateLimitBackend, RedisPrefix: "fhirgate:rl:", LoginPerIP: DefaultLoginPerIP, AuthorizePerIP: DefaultAuthorizePerIP,
		TokenPerIP: DefaultTokenPerIP, GatewayPerClient: DefaultGatewayPerClient, GatewayPerUser: DefaultGatewayPerUser,
		Throttle: DefaultThrottle,
	}
}

// DefaultAnomaly returns the detector defaults (those of anomaly.DefaultConfig).
func DefaultAnomaly() Anomaly {
	d := anomaly.DefaultConfig()
	return Anomaly{
		Enabled:              true,
		Store:                DefaultAnomalyStore,
		RateSpikeAction:      string(d.RateSpike.Action),
		RateSpikeFactor:      int(d.RateSpike.Factor),
		RateSpikeMinRequests: d.RateSpike.MinRequests,
		ScrapingAction:       string(d.Scraping.Action),
		ScrapingMaxPatients:  d.Scraping.MaxPatients,
		AuthFailuresAction:   string(d.AuthFailures.Action),
		AuthFailuresMax:      d.AuthFailures.Max,
		RefreshReuseAction:   string(d.RefreshReuse.Action),
		ReplayAction:         string(d.Replay.Action),
		TokenInURLAction:     string(d.TokenInURL.Action),
		ThrottleFor:          d.ThrottleFor,
	}
}

// RatePolicy turns the rate-limit section into a ratelimit.Policy.
func (r RateLimit) RatePolicy() (ratelimit.Policy, error) {
	var p ratelimit.Policy
	parse := func(s string) ratelimit.Rate {
		v, err := ratelimit.ParseRate(s)
		if err != nil {
			panic(err) // Validate has checked every rate
		}
		return v
	}
	if err := r.check(func(string, string, ...any) {}); err != nil {
		return p, err
	}
	p.Endpoints = map[ratelimit.Endpoint]ratelimit.Rates{
		ratelimit.EndpointLogin:     {IP: parse(r.LoginPerIP)},
		ratelimit.EndpointAuthorize: {IP: parse(r.AuthorizePerIP)},
		ratelimit.EndpointToken:     {IP: parse(r.TokenPerIP)},
		ratelimit.EndpointGateway:   {IP: parse(r.GatewayPerIP), Client: parse(r.GatewayPerClient), User: parse(r.GatewayPerUser)},
	}
	p.ClientOverrides, _ = ratelimit.ParseOverrides(r.ClientOverrides)
	p.Throttle = parse(r.Throttle)
	return p, nil
}

// check reports every unusable rate-limit setting through add and returns
// ErrInvalid when there was one.
func (r RateLimit) check(add func(key, format string, args ...any)) error {
	var bad bool
	for _, f := range []struct{ key, val string }{
		{"ratelimit.login_per_ip", r.LoginPerIP}, {"ratelimit.authorize_per_ip", r.AuthorizePerIP},
		{"ratelimit.token_per_ip", r.TokenPerIP}, {"ratelimit.gateway_per_ip", r.GatewayPerIP},
		{"ratelimit.gateway_per_client", r.GatewayPerClient}, {"ratelimit.gateway_per_user", r.GatewayPerUser},
		{"ratelimit.throttle", r.Throttle},
	} {
		if _, err := ratelimit.ParseRate(f.val); err != nil {
			add(f.key, "%v", err)
			bad = true
		}
	}
	if _, err := ratelimit.ParseOverrides(r.ClientOverrides); err != nil {
		add("ratelimit.client_overrides", "%v", err)
		bad = true
	}
	switch r.Backend {
	case "memory":
	case "redis":
		if r.RedisURL == "" {
			add("ratelimit.redis_url", "required with ratelimit.backend redis")
			bad = true
		}
	default:
		add("ratelimit.backend", "must be memory or redis, got %q", r.Backend)
		bad = true
	}
	if bad {
		return ErrInvalid
	}
	return nil
}

// DetectorConfig turns the anomaly section into an anomaly.Config.
func (a Anomaly) DetectorConfig() anomaly.Config {
	c := anomaly.DefaultConfig()
	c.RateSpike.Action = anomaly.Action(a.RateSpikeAction)
	if a.RateSpikeFactor > 0 {
		c.RateSpike.Factor = float64(a.RateSpikeFactor)
	}
	if a.RateSpikeMinRequests > 0 {
		c.RateSpike.MinRequests = a.RateSpikeMinRequests
	}
	c.Scraping.Action = anomaly.Action(a.ScrapingAction)
	if a.ScrapingMaxPatients > 0 {
		c.Scraping.MaxPatients = a.ScrapingMaxPatients
	}
	c.AuthFailures.Action = anomaly.Action(a.AuthFailuresAction)
	if a.AuthFailuresMax > 0 {
		c.AuthFailures.Max = a.AuthFailuresMax
	}
	c.RefreshReuse.Action = anomaly.Action(a.RefreshReuseAction)
	c.Replay.Action = anomaly.Action(a.ReplayAction)
	c.TokenInURL.Action = anomaly.Action(a.TokenInURLAction)
	if a.ThrottleFor > 0 {
		c.ThrottleFor = a.ThrottleFor
	}
	c.SuspendFor = a.SuspendFor
	return c
}

// validateProtect checks the admin, ratelimit and anomaly sections.
func (c *Config) validateProtect(add func(key, format string, args ...any)) {
	if c.Admin.Addr != "" {
		host, port, err := net.SplitHostPort(c.Admin.Addr)
		if err != nil {
			add("admin.addr", "must be host:port, got %q", c.Admin.Addr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add("admin.addr", "port must be a number 0-65535, got %q", port)
		} else {
			if c.Admin.Addr == c.Addr && n != 0 {
				add("admin.addr", "must differ from addr: nothing admin is reachable on the public listener")
			}
			if !c.TLSEnabled() && !httpx.IsLoopbackHost(host) {
				add("admin.addr", "plain http on the non-loopback address %q would expose admin tokens: set tls.cert_file and tls.key_file, or listen on loopback", c.Admin.Addr)
			}
		}
	}
	if c.Admin.ClientCAFile != "" && !c.TLSEnabled() {
		add("admin.client_ca_file", "needs tls.cert_file and tls.key_file (client certificates need TLS)")
	}
	_ = c.RateLimit.check(add)
	for _, f := range []struct{ key, val string }{
		{"anomaly.rate_spike_action", c.Anomaly.RateSpikeAction}, {"anomaly.patient_scraping_action", c.Anomaly.ScrapingAction},
		{"anomaly.auth_failures_action", c.Anomaly.AuthFailuresAction}, {"anomaly.refresh_reuse_action", c.Anomaly.RefreshReuseAction},
		{"anomaly.replay_action", c.Anomaly.ReplayAction}, {"anomaly.token_in_url_action", c.Anomaly.TokenInURLAction},
	} {
		if !anomaly.Action(f.val).Valid() {
			add(f.key, "must be record, throttle or suspend, got %q", f.val)
		}
	}
	switch c.Anomaly.Store {
	case "store", "memory":
	case "redis":
		if c.RateLimit.RedisURL == "" {
			add("anomaly.store", "redis needs ratelimit.redis_url")
		}
	default:
		add("anomaly.store", "must be store, memory or redis, got %q", c.Anomaly.Store)
	}
	if c.Anomaly.RateSpikeFactor < 0 || c.Anomaly.RateSpikeFactor == 1 {
		add("anomaly.rate_spike_factor", "must be at least 2, got %d", c.Anomaly.RateSpikeFactor)
	}
	if c.Anomaly.ThrottleFor < 0 {
		add("anomaly.throttle_for", "must not be negative")
	}
	if c.Anomaly.SuspendFor < 0 {
		add("anomaly.suspend_for", "must not be negative")
	}
	if (c.Anomaly.WebhookURL == "") != (c.Anomaly.WebhookSecret == "") {
		add("anomaly.webhook_url", "webhook_url and webhook_secret go together")
	} else if c.Anomaly.WebhookURL != "" {
		if _, err := anomaly.NewWebhook(anomaly.WebhookConfig{URL: c.Anomaly.WebhookURL, Secret: c.Anomaly.WebhookSecret}, nil, nil); err != nil {
			add("anomaly.webhook_url", "%v", err)
		}
	}
}
