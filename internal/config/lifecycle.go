package config

import "time"

// Revocation configures how the gateway follows the revocation list.
type Revocation struct {
	PollInterval time.Duration `yaml:"poll_interval" env:"FHIRGATE_REVOCATION_POLL_INTERVAL" doc:"how often the gateway reloads revoked tokens and families from the store"`
	MaxStaleness time.Duration `yaml:"max_staleness" env:"FHIRGATE_REVOCATION_MAX_STALENESS" doc:"the gateway refuses every token (503) once its revocation list is older than this; >= poll_interval"`
}

// Token-lifecycle defaults.
const (
	// DefaultRefreshRetryWindow lets a client that lost a refresh response
	// retry with the previous refresh token (FAPI 2.0).
	DefaultRefreshRetryWindow = 10 * time.Second
	// MaxRefreshRetryWindow keeps the window short.
	MaxRefreshRetryWindow = 5 * time.Minute
	// DefaultRevocationPoll is the gateway's revocation list refresh interval.
	DefaultRevocationPoll = 2 * time.Second
	// DefaultRevocationStaleness is how old the list may get before the
	// gateway fails closed.
	DefaultRevocationStaleness = 6 * time.Second
)

// validateLifecycle checks the token-lifecycle keys.
func (c *Config) validateLifecycle(add func(key, format string, args ...any)) {
	if w := c.Tokens.RefreshRetryWindow; w < 0 || w > MaxRefreshRetryWindow {
		add("tokens.refresh_retry_window", "must be between 0 (no retries) and %s, got %s", formatDuration(MaxRefreshRetryWindow), w)
	}
	r := c.Revocation
	switch {
	case r.PollInterval <= 0:
		add("revocation.poll_interval", "must be positive, got %s", r.PollInterval)
	case r.MaxStaleness < r.PollInterval:
		add("revocation.max_staleness", "must be at least revocation.poll_interval (%s), got %s", formatDuration(r.PollInterval), r.MaxStaleness)
	}
}
