package ratelimit_test

import (
	"errors"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]ratelimit.Rate{
		"":                  {},
		"off":               {},
		"10/1m":             {Requests: 10, Per: time.Minute},
		" 5 / 1s ":          {Requests: 5, Per: time.Second},
		"10/m":              {Requests: 10, Per: time.Minute},
		"600/1m burst 900":  {Requests: 600, Per: time.Minute, Burst: 900},
		"100/1h30m burst 1": {Requests: 100, Per: 90 * time.Minute, Burst: 1},
	} {
		got, err := ratelimit.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"10", "x/1m", "-1/1m", "10/0s", "10/-1m", "10/1m burst x", "10/1m burst 0", "10/xyz"} {
		if _, err := ratelimit.ParseRate(bad); !errors.Is(err, ratelimit.ErrInvalidRate) {
			t.Errorf("ParseRate(%q) = %v, want ErrInvalidRate", bad, err)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	m, err := ratelimit.ParseOverrides("bulk=6000/1m, kiosk=60/1m burst 10,")
	if err != nil || len(m) != 2 || m["bulk"].Requests != 6000 || m["kiosk"].Burst != 10 {
		t.Fatalf("ParseOverrides = %v, %v", m, err)
	}
	for _, bad := range []string{"bulk", "=10/1m", "bulk=oops"} {
		if _, err := ratelimit.ParseOverrides(bad); !errors.Is(err, ratelimit.ErrInvalidRate) {
			t.Errorf("ParseOverrides(%q) = %v", bad, err)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10/1m", "600/1m burst 900", "off", "5/s", "1/1h30m burst 2", "x/y", "10/1m burst"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ratelimit.ParseRate(s)
		if err != nil {
			if !errors.Is(err, ratelimit.ErrInvalidRate) {
				t.Fatalf("ParseRate(%q) error %v does not wrap ErrInvalidRate", s, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRate(%q) = %+v, which does not validate: %v", s, r, err)
		}
		if r.Unlimited() {
			return
		}
		back, err := ratelimit.ParseRate(r.String())
		if err != nil || back.Requests != r.Requests || back.Per != r.Per || back.Capacity() != r.Capacity() {
			t.Fatalf("round trip of %q via %q: %+v, %v", s, r.String(), back, err)
		}
	})
}
