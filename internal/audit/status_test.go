package audit

import "testing"

func TestResponseStatus(t *testing.T) {
	if got := WithStatus("read Observation/1", 404); got != "read Observation/1; HTTP 404" {
		t.Fatalf("WithStatus: %q", got)
	}
	for reason, want := range map[string]int{
		"read Observation/1; HTTP 200":          200,
		"search-type Observation; HTTP 502":     502,
		"x; HTTP 200; y; HTTP 404":              404,
		"read Observation/1":                    0,
		"read Observation/1; HTTP 20":           0,
		"read Observation/1; HTTP 2000":         0,
		"read Observation/1; HTTP abc":          0,
		"read Observation/1; HTTP 099":          0,
		"invalid_token: expired; HTTP 200 text": 0,
	} {
		got, ok := ResponseStatus(reason)
		if got != want || ok != (want != 0) {
			t.Errorf("ResponseStatus(%q) = %d, %v; want %d", reason, got, ok, want)
		}
	}
}
