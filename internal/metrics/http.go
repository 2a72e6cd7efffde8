package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// UnmatchedRoute labels requests no route pattern matched.
const UnmatchedRoute = "unmatched"

// Handler serves the registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Middleware measures every request next serves. Wrap a *http.ServeMux:
// the route label is the pattern the mux matched (r.Pattern, e.g.
// "POST /token"), so it never carries ids from the URL.
func (r *Registry) Middleware(next http.Handler) http.Handler {
	if r == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		r.inFlight.Inc()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			r.inFlight.Dec()
			route := req.Pattern
			if route == "" {
				route = UnmatchedRoute
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			r.ObserveRequest(route, status, time.Since(start))
		}()
		next.ServeHTTP(rec, req)
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush,
// deadlines, hijacking).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush implements http.Flusher when the underlying writer does.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Transport measures calls to the upstream named name through next
// (http.DefaultTransport when nil).
func (r *Registry) Transport(name string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if r == nil {
		return next
	}
	return roundTripper{r: r, name: name, next: next}
}

type roundTripper struct {
	r    *Registry
	name string
	next http.RoundTripper
}

func (t roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.r.ObserveUpstream(t.name, 0, ErrorKind(err), time.Since(start))
		return nil, err
	}
	t.r.ObserveUpstream(t.name, resp.StatusCode, "", time.Since(start))
	return resp, nil
}

// CloseIdleConnections forwards to the wrapped transport when it can.
func (t roundTripper) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// ErrorKind classifies a transport error for the upstream_errors_total
// kind label.
func ErrorKind(err error) string {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "connect"
	default:
		return "other"
	}
}
