package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

// Response errors, mapped to 502 by the error handler.
var (
	errResponseTooLarge = errors.New("gateway: upstream response too large")
	errUncheckable      = errors.New("gateway: upstream response cannot be checked")
)

// newProxy builds the reverse proxy of one upstream.
func (h *Handler) newProxy(up *upstream.Upstream) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { h.rewrite(up, pr) },
		Transport: up.Transport,
		ModifyResponse: func(resp *http.Response) error {
			if err := h.modifyResponse(resp); err != nil {
				return err
			}
			return h.auditAnswer(resp)
		},
		ErrorHandler: h.proxyError,
		BufferPool:   &h.bufPool,
		ErrorLog:     slog.NewLogLogger(h.opts.Logger.Handler(), slog.LevelWarn),
	}
}

// rewrite builds the upstream request: target URL, constraints already in
// the exchange's query or body, forwarding headers; the client's
// credentials removed.
func (h *Handler) rewrite(up *upstream.Upstream, pr *httputil.ProxyRequest) {
	x, _ := pr.In.Context().Value(exchangeKey{}).(*exchange)
	out := pr.Out
	out.URL.Scheme, out.URL.Host = up.URL.Scheme, up.URL.Host
	out.URL.Path, out.URL.RawPath = up.URL.Path+x.relPath, ""
	out.URL.RawQuery = x.rawQuery
	out.Host = ""
	pr.SetXForwarded()
	hd := out.Header
	hd.Set("X-Forwarded-Host", h.base.Host)
	hd.Set("X-Forwarded-Proto", h.base.Scheme)
	if h.basePath != "" {
		hd.Set("X-Forwarded-Prefix", h.basePath)
	}
	hd.Del("Authorization")
	hd.Del("DPoP")
	// The method the gateway decided on is the method the upstream sees.
	hd.Del("X-HTTP-Method-Override")
	hd.Del("X-HTTP-Method")
	hd.Del("X-Method-Override")
	hd.Del("Cookie")
	hd.Del("Proxy-Authorization")
	if x.body != nil {
		out.Body = io.NopCloser(bytes.NewReader(x.body))
		out.ContentLength = int64(len(x.body))
		out.Header.Set("Content-Length", strconv.Itoa(len(x.body)))
		body := x.body
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if x.inspect {
		// The response must come back as plain FHIR JSON to be checked; a
		// HEAD is answered from a GET so that existence is checked too.
		hd.Del("Accept-Encoding")
		hd.Set("Accept", fhirJSON)
		if out.Method == http.MethodHead {
			out.Method = http.MethodGet
		}
	}
	hd.Del(upstream.DefaultIdentityHeader) // only the gateway asserts identity
	if id := up.Identity; id != nil {
		c := x.v.claims
		if a, err := id.Assert(upstream.Who{Subject: c.Subject, ClientID: c.ClientID, Patient: c.Patient,
			FHIRUser: c.FHIRUser, Scope: c.Scope, TokenID: c.JTI}); err == nil {
			hd.Set(id.Header(), a)
		} else {
			h.opts.Logger.Error("gateway: identity assertion failed", "error", err)
			hd.Del(id.Header())
		}
	}
}

// upstreamHeadersDropped never reach the client from a backend.
var upstreamHeadersDropped = []string{
	"Server", "X-Powered-By", "Set-Cookie", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Max-Age", "Cache-Control", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options",
	"Content-Security-Policy", "Strict-Transport-Security", "WWW-Authenticate",
}

// modifyResponse checks the backend's answer before it reaches the client.
func (h *Handler) modifyResponse(resp *http.Response) error {
	x, _ := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	for _, k := range upstreamHeadersDropped {
		resp.Header.Del(k)
	}
	for _, k := range []string{"Location", "Content-Location"} {
		if v := resp.Header.Get(k); v != "" {
			resp.Header.Set(k, h.publicURL(x.up, v))
		}
	}
	switch s := resp.StatusCode; {
	case s == http.StatusNotFound || s == http.StatusGone:
		// One answer for "does not exist" and "not yours".
		return replaceBody(resp, http.StatusNotFound, notFoundBody)
	case s == http.StatusUnauthorized || s == http.StatusProxyAuthRequired:
		h.opts.Logger.Error("gateway: upstream refused the gateway's credentials", "status", s, "upstream", x.up.Prefix)
		return replaceBody(resp, http.StatusBadGateway, mustOutcome(fhir.Outcome(fhir.SeverityError, fhir.CodeException, "the upstream server is unavailable")))
	case s >= 500:
		h.opts.Logger.Warn("gateway: upstream error", "status", s, "upstream", x.up.Prefix)
		return replaceBody(resp, s, mustOutcome(fhir.Outcome(fhir.SeverityError, fhir.CodeException, "the upstream server failed")))
	}
	if !x.inspect || resp.StatusCode < 200 || resp.StatusCode > 299 || resp.StatusCode == http.StatusNoContent {
		resp.Body = &limitedBody{rc: resp.Body, left: h.opts.MaxResponseBytes}
		return nil
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != fhirJSON && mt != "application/json" {
		_ = resp.Body.Close()
		return errUncheckable
	}
	if resp.Header.Get("Content-Encoding") != "" {
		_ = resp.Body.Close()
		return errUncheckable
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.opts.MaxResponseBytes+1))
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if int64(len(body)) > h.opts.MaxResponseBytes {
		return errResponseTooLarge
	}
	body = h.publicBody(x.up, body)
	out, verdict, err := h.inspect(x, body)
	if err != nil {
		return err
	}
	if x.auditPatients && !verdict.notFound {
		x.collectPatients(out)
	}
	if verdict.withheld != "" {
		ev := x.event
		ev.Time, ev.Action, ev.Outcome, ev.Reason = h.opts.Now(), ActionFHIRFiltered, audit.Failure, verdict.withheld
		ev.EntriesFiltered = verdict.entries
		h.recordCtx(resp.Request.Context(), ev)
		if verdict.notFound {
			return replaceBody(resp, http.StatusNotFound, notFoundBody)
		}
	}
	if !bytes.Equal(out, body) || verdict.withheld != "" {
		resp.Header.Del("ETag")
	}
	return replaceBody(resp, resp.StatusCode, out)
}

func (h *Handler) recordCtx(ctx context.Context, ev audit.Event) {
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "gateway: audit of a filtered response failed", "error", err)
	}
}

func replaceBody(resp *http.Response, status int, body []byte) error {
	if resp.Body != nil {
		_ = resp.Body.Close()
	}
	resp.StatusCode = status
	resp.Status = strconv.Itoa(status) + " " + http.StatusText(status)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Transfer-Encoding")
	if status >= 400 {
		resp.Header.Set("Content-Type", fhirJSON)
		resp.Header.Del("ETag")
		resp.Header.Del("Last-Modified")
		resp.Header.Del("Location")
		resp.Header.Del("Content-Location")
	}
	return nil
}

// upstreamBase is the backend's base URL as it may appear in its answers.
func upstreamBase(up *upstream.Upstream) string {
	return strings.TrimRight(up.URL.Scheme+"://"+up.URL.Host+up.URL.Path, "/")
}

// upstreamBases caches upstreamBase and its byte form per upstream.
type upstreamBases struct {
	str   string
	slash []byte // with a trailing "/"
}

// publicURL maps a URL of the backend onto the public FHIR base.
func (h *Handler) publicURL(up *upstream.Upstream, v string) string {
	if rest, ok := strings.CutPrefix(v, h.bases[up].str); ok && (rest == "" || rest[0] == '/' || rest[0] == '?') {
		return h.opts.BaseURL + rest
	}
	return v
}

// publicBody replaces the backend's base URL by the public one in an
// inspected body (Bundle links, fullUrl, references).
func (h *Handler) publicBody(up *upstream.Upstream, body []byte) []byte {
	ub := h.bases[up].slash
	if !bytes.Contains(body, ub) {
		return body
	}
	return bytes.ReplaceAll(body, ub, []byte(strings.TrimRight(h.opts.BaseURL, "/")+"/"))
}

// proxyError answers transport failures without upstream details.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.Is(r.Context().Err(), context.Canceled):
		h.opts.Logger.DebugContext(r.Context(), "gateway: client went away", "error", err)
		w.WriteHeader(http.StatusBadGateway)
	case errors.Is(err, errAuditUnavailable):
		h.writeOutcome(w, http.StatusServiceUnavailable, fhir.CodeTransient, "the request cannot be recorded; try again later")
	case errors.As(err, &mbe):
		h.writeOutcome(w, http.StatusRequestEntityTooLarge, fhir.CodeTooCostly, "the request body is too large")
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		h.opts.Logger.WarnContext(r.Context(), "gateway: upstream timeout", "error", err)
		h.writeOutcome(w, http.StatusGatewayTimeout, fhir.CodeTimeout, "the upstream server did not answer in time")
	case errors.Is(err, errResponseTooLarge):
		h.opts.Logger.WarnContext(r.Context(), "gateway: upstream response too large", "error", err)
		h.writeOutcome(w, http.StatusBadGateway, fhir.CodeTooCostly, "the upstream response is too large")
	default:
		h.opts.Logger.ErrorContext(r.Context(), "gateway: upstream failure", "error", err)
		h.writeOutcome(w, http.StatusBadGateway, fhir.CodeException, "the upstream server is unavailable")
	}
}

// limitedBody fails a streamed response that grows past the limit.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// At the limit: fine only if the body ends here.
		var one [1]byte
		m, err := l.rc.Read(one[:])
		if m > 0 {
			return 0, errResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }

// bufferPool recycles the reverse proxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
