package config

import (
	"slices"
	"testing"
	"time"
)

func TestLifecycleDefaultsAndOverrides(t *testing.T) {
	c, err := Load(LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens.RefreshRetryWindow != 10*time.Second || c.Revocation.PollInterval != 2*time.Second ||
		c.Revocation.MaxStaleness != 6*time.Second {
		t.Fatalf("defaults %+v %+v", c.Tokens, c.Revocation)
	}
	c, err = Load(LoadOptions{LookupEnv: envMap(map[string]string{
		"FHIRGATE_REFRESH_RETRY_WINDOW": "0s", "FHIRGATE_REVOCATION_POLL_INTERVAL": "500ms",
		"FHIRGATE_REVOCATION_MAX_STALENESS": "2s",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens.RefreshRetryWindow != 0 || c.Revocation.PollInterval != 500*time.Millisecond || c.Revocation.MaxStaleness != 2*time.Second {
		t.Fatalf("overrides %+v %+v", c.Tokens, c.Revocation)
	}
}

func TestLifecycleRefusals(t *testing.T) {
	for _, tc := range []struct {
		env map[string]string
		key string
	}{
		{map[string]string{"FHIRGATE_REFRESH_RETRY_WINDOW": "-1s"}, "tokens.refresh_retry_window"},
		{map[string]string{"FHIRGATE_REFRESH_RETRY_WINDOW": "1h"}, "tokens.refresh_retry_window"},
		{map[string]string{"FHIRGATE_REVOCATION_POLL_INTERVAL": "0s"}, "revocation.poll_interval"},
		{map[string]string{"FHIRGATE_REVOCATION_POLL_INTERVAL": "5s", "FHIRGATE_REVOCATION_MAX_STALENESS": "1s"}, "revocation.max_staleness"},
	} {
		_, err := Load(LoadOptions{LookupEnv: envMap(tc.env)})
		if keys := problemKeys(t, err); !slices.Contains(keys, tc.key) {
			t.Errorf("%v: problems %v, want %s", tc.env, keys, tc.key)
		}
	}
}
