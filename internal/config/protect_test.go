package config

import (
	"slices"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

func TestProtectDefaults(t *testing.T) {
	c, err := Load(LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Addr != "" || c.RateLimit.Backend != "memory" || !c.Anomaly.Enabled || c.Anomaly.Store != "store" {
		t.Fatalf("defaults: %+v %+v %+v", c.Admin, c.RateLimit, c.Anomaly)
	}
	p, err := c.RateLimit.RatePolicy()
	if err != nil {
		t.Fatal(err)
	}
	if p.Endpoints[ratelimit.EndpointToken].IP.Requests != 120 || p.Endpoints[ratelimit.EndpointLogin].IP.Burst != 20 ||
		p.Endpoints[ratelimit.EndpointGateway].Client.Requests != 3000 || !p.Endpoints[ratelimit.EndpointGateway].IP.Unlimited() {
		t.Fatalf("policy: %+v", p)
	}
	d := c.Anomaly.DetectorConfig()
	if d.RateSpike.Action != anomaly.ActionThrottle || d.Scraping.MaxPatients != 100 || d.SuspendFor != 0 {
		t.Fatalf("detector config: %+v", d)
	}
}

func TestProtectOverrides(t *testing.T) {
	c, err := Load(LoadOptions{LookupEnv: func(k string) (string, bool) {
		v, ok := map[string]string{
			"FHIRGATE_RATELIMIT_CLIENT_OVERRIDES":      "bulk=6000/1m",
			"FHIRGATE_ANOMALY_PATIENT_SCRAPING_ACTION": "suspend",
			"FHIRGATE_ANOMALY_SUSPEND_FOR":             "2h",
		}[k]
		return v, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.RateLimit.RatePolicy()
	if p.ClientOverrides["bulk"].Requests != 6000 {
		t.Fatalf("overrides: %+v", p.ClientOverrides)
	}
	if d := c.Anomaly.DetectorConfig(); d.Scraping.Action != anomaly.ActionSuspend || d.SuspendFor != 2*time.Hour {
		t.Fatalf("detector config: %+v", d)
	}
}

// anomaly.store takes store (the default), memory or redis (with a Redis
// URL); anything else is refused.
func TestAnomalyStoreValues(t *testing.T) {
	for _, v := range []string{"store", "memory"} {
		c, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"anomaly.store": v}})
		if err != nil || c.Anomaly.Store != v {
			t.Errorf("anomaly.store %q: %v", v, err)
		}
	}
	if _, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"anomaly.store": "redis", "ratelimit.redis_url": "redis://127.0.0.1:6379"}}); err != nil {
		t.Errorf("anomaly.store redis with a URL: %v", err)
	}
	for _, v := range []string{"sqlite", "postgres", "Store", ""} {
		_, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"anomaly.store": v}})
		if keys := problemKeys(t, err); !slices.Contains(keys, "anomaly.store") {
			t.Errorf("anomaly.store %q accepted: %v", v, keys)
		}
	}
}

func TestProtectRefusals(t *testing.T) {
	for key, ov := range map[string]map[string]string{
		"ratelimit.token_per_ip":     {"ratelimit.token_per_ip": "lots"},
		"ratelimit.client_overrides": {"ratelimit.client_overrides": "bulk"},
		"ratelimit.backend":          {"ratelimit.backend": "memcached"},
		"ratelimit.redis_url":        {"ratelimit.backend": "redis"},
		"anomaly.store":              {"anomaly.store": "redis"},
		"anomaly.replay_action":      {"anomaly.replay_action": "ban"},
		"anomaly.rate_spike_factor":  {"anomaly.rate_spike_factor": "1"},
		"anomaly.webhook_url":        {"anomaly.webhook_url": "https://hooks.example.com/x"},
		"admin.addr":                 {"admin.addr": "0.0.0.0:9090"},
		"admin.client_ca_file":       {"admin.client_ca_file": "/etc/ca.pem"},
		"anomaly.suspend_for":        {"anomaly.suspend_for": "-1h"},
	} {
		_, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: ov})
		if keys := problemKeys(t, err); !slices.Contains(keys, key) {
			t.Errorf("%v: problems %v, want %s", ov, keys, key)
		}
	}
	// The admin listener never shares the public address.
	_, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"addr": "127.0.0.1:8080", "admin.addr": "127.0.0.1:8080"}})
	if keys := problemKeys(t, err); !slices.Contains(keys, "admin.addr") {
		t.Errorf("admin.addr equal to addr accepted: %v", keys)
	}
	// A webhook secret is checked (too short) and never required without a URL.
	_, err = Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{"anomaly.webhook_url": "https://hooks.example.com/x", "anomaly.webhook_secret": "short"}})
	if keys := problemKeys(t, err); !slices.Contains(keys, "anomaly.webhook_url") {
		t.Errorf("short webhook secret accepted: %v", keys)
	}
}
