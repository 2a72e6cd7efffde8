package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseRate reads a rate written "N/duration", optionally followed by
// " burst B": "10/1m", "600/1m burst 900", "5/1s". "", "0" and "off" are
// the unlimited zero Rate.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || strings.EqualFold(s, "off") {
		return Rate{}, nil
	}
	main, burstPart, hasBurst := strings.Cut(s, " burst ")
	n, per, ok := strings.Cut(strings.TrimSpace(main), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%w: %q is not like 10/1m or 600/1m burst 900", ErrInvalidRate, s)
	}
	var r Rate
	var err error
	if r.Requests, err = strconv.Atoi(strings.TrimSpace(n)); err != nil || r.Requests < 1 {
		return Rate{}, fmt.Errorf("%w: %q: the count must be a positive integer", ErrInvalidRate, s)
	}
	per = strings.TrimSpace(per)
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per // "10/m" means 10 per minute
	}
	if r.Per, err = time.ParseDuration(per); err != nil || r.Per <= 0 {
		return Rate{}, fmt.Errorf("%w: %q: the period must be a positive duration like 1m", ErrInvalidRate, s)
	}
	if hasBurst {
		if r.Burst, err = strconv.Atoi(strings.TrimSpace(burstPart)); err != nil || r.Burst < 1 {
			return Rate{}, fmt.Errorf("%w: %q: the burst must be a positive integer", ErrInvalidRate, s)
		}
	}
	return r, nil
}

// ParseOverrides reads per-client rates written "client=rate, client=rate",
// e.g. "bulk-export=6000/1m, kiosk=60/1m burst 10".
func ParseOverrides(s string) (map[string]Rate, error) {
	out := map[string]Rate{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, rate, ok := strings.Cut(part, "=")
		id = strings.TrimSpace(id)
		if !ok || id == "" {
			return nil, fmt.Errorf("%w: %q is not like client_id=100/1m", ErrInvalidRate, part)
		}
		r, err := ParseRate(rate)
		if err != nil {
			return nil, fmt.Errorf("client %q: %w", id, err)
		}
		out[id] = r
	}
	return out, nil
}
