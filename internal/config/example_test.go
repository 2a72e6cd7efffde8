package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const examplePath = "../../fhirgate.example.yaml"

// TestExampleFileIsCurrent: fhirgate.example.yaml is what Example
// generates (run with FHIRGATE_WRITE_EXAMPLE=1 to rewrite it).
func TestExampleFileIsCurrent(t *testing.T) {
	want := Example()
	if os.Getenv("FHIRGATE_WRITE_EXAMPLE") == "1" {
		if err := os.WriteFile(examplePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("fhirgate.example.yaml is stale: run FHIRGATE_WRITE_EXAMPLE=1 go test ./internal/config -run TestExampleFileIsCurrent")
	}
}

// TestExampleFileLoadsWithTheDefaults: the example loads and validates,
// shows every key (each section included), and its values are the defaults.
func TestExampleFileLoadsWithTheDefaults(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	fromFile, err := Load(LoadOptions{File: examplePath, LookupEnv: noEnv})
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	defaults, err := Load(LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromFile, defaults) {
		t.Fatalf("example values differ from the defaults:\n%+v\n%+v", fromFile, defaults)
	}
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range Fields() {
		top, sub, nested := strings.Cut(f.Key, ".")
		_, derived := derivedKeys[f.Key]
		var ok bool
		if nested {
			m, _ := doc[top].(map[string]any)
			_, ok = m[sub]
		} else {
			_, ok = doc[top]
		}
		if ok == derived {
			t.Errorf("key %s: shown %v (derived keys are commented examples)", f.Key, ok)
		}
	}
	for _, s := range []string{"admin", "ratelimit", "anomaly", "audit", "dpop", "mtls", "par", "sender_constraint",
		"replay", "revocation", "gateway", "login"} {
		if _, ok := doc[s]; !ok {
			t.Errorf("section %s missing", s)
		}
	}
	if !strings.Contains(string(raw), "require_mfa_for:") || !strings.Contains(string(raw), "# upstreams:") {
		t.Error("login.require_mfa_for or the upstreams example missing")
	}
}
