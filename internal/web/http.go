package web

import (
	"bytes"
	"io/fs"
	"net/http"
	"strconv"
)

// Write renders page name with status. Callers set the security headers
// (httpx.PageSecurityHeaders) first. A rendering failure becomes a bare 500.
func (p *Pages) Write(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := p.Render(&buf, name, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// StaticHandler serves the embedded assets under /static/.
func StaticHandler() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic("web: embedded static directory missing: " + err.Error()) // build-time invariant
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/static/" || r.URL.Path[len(r.URL.Path)-1] == '/' {
			http.NotFound(w, r) // no directory listings
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		files.ServeHTTP(w, r)
	})
}

// Register serves the static assets at GET /static/.
func Register(mux *http.ServeMux) {
	mux.Handle("GET /static/", StaticHandler())
}
