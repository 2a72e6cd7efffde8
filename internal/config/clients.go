package config

import "time"

// validateClients checks the client authentication, PAR, key rotation and
// backend token settings.
func (c *Config) validateClients(add func(key, format string, args ...any)) {
	if d := c.Tokens.BackendAccessTokenTTL; d < time.Second || d > MaxAccessTokenTTL {
		add("tokens.backend_access_token_ttl", "must be between 1s and %s, got %s", formatDuration(MaxAccessTokenTTL), d)
	}
	if d := c.PAR.TTL; d < time.Second || d > MaxPARTTL {
		add("par.ttl", "must be between 1s and %s, got %s", formatDuration(MaxPARTTL), d)
	}
	switch p := c.Keys.RotationPeriod; {
	case p < 0:
		add("keys.rotation_period", "must not be negative, got %s", p)
	case p > 0 && p < 2*time.Hour:
		add("keys.rotation_period", "must be 0 (off) or at least 2h, got %s", p)
	}
	if pre := c.Keys.Prepublish; pre < 0 || (c.Keys.RotationPeriod > 0 && pre > c.Keys.RotationPeriod/2) {
		add("keys.prepublish", "must be between 0 and half of keys.rotation_period, got %s", pre)
	}
	if d := c.ClientAuth.JWKSTimeout; d < 100*time.Millisecond || d > time.Minute {
		add("client_auth.jwks_timeout", "must be between 100ms and 1m, got %s", d)
	}
	if n := c.ClientAuth.JWKSMaxBytes; n < 1024 || n > 1<<20 {
		add("client_auth.jwks_max_bytes", "must be between 1024 and 1048576, got %d", n)
	}
	if d := c.ClientAuth.JWKSCacheTTL; d < time.Second || d > 24*time.Hour {
		add("client_auth.jwks_cache_ttl", "must be between 1s and 24h, got %s", d)
	}
	if d := c.ClientAuth.CacheTTL; d < 0 || d > 30*time.Second {
		add("client_auth.cache_ttl", "must be between 0 (off) and 30s, got %s", d)
	}
}
