package demoehr

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// ErrOptions is returned by New for unusable options.
var ErrOptions = errors.New("demoehr: invalid options")

// Options configures the server.
type Options struct {
	// Username and Password are the only credentials accepted (HTTP Basic).
	Username, Password string
	// Patients is how many synthetic patients to seed; 0 means DefaultPatients.
	Patients int
	// Store, if set, is used instead of a freshly seeded one.
	Store  *Store
	Logger *slog.Logger
	Now    func() time.Time
}

// Handler serves the FHIR API at its root ("/metadata", "/Patient/1", ...).
type Handler struct {
	store      *Store
	userHash   [32]byte
	passHash   [32]byte
	log        *slog.Logger
	mux        *http.ServeMux
	capability []byte
}

// New builds the server, seeding a store unless one is given.
func New(opts Options) (*Handler, error) {
	if opts.Username == "" || opts.Password == "" {
		return nil, fmt.Errorf("%w: Username and Password are required", ErrOptions)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	st := opts.Store
	if st == nil {
		n := opts.Patients
		if n == 0 {
			n = DefaultPatients
		}
		var err error
		if st, err = NewStore(n, opts.Now); err != nil {
			return nil, err
		}
	}
	h := &Handler{
		store:    st,
		userHash: sha256.Sum256([]byte(opts.Username)),
		passHash: sha256.Sum256([]byte(opts.Password)),
		log:      opts.Logger,
		mux:      http.NewServeMux(),
	}
	h.capability = capabilityStatement()
	h.mux.HandleFunc("GET /metadata", h.metadata)
	h.mux.HandleFunc("GET /{type}", h.search)
	h.mux.HandleFunc("POST /{type}/_search", h.search)
	h.mux.HandleFunc("POST /{type}", h.create)
	h.mux.HandleFunc("GET /{type}/{id}", h.read)
	h.mux.HandleFunc("PUT /{type}/{id}", h.update)
	h.mux.HandleFunc("GET /{type}/{id}/_history/{vid}", h.vread)
	h.mux.HandleFunc("GET /Patient/{id}/{type}", h.compartmentSearch)
	return h, nil
}

// Store returns the data store.
func (h *Handler) Store() *Store { return h.store }

// ServeHTTP checks HTTP Basic credentials, then serves the FHIR API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || !h.credentialsMatch(user, pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="demo-ehr"`)
		writeOutcome(w, http.StatusUnauthorized, "login", "HTTP Basic authentication required")
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) credentialsMatch(user, pass string) bool {
	u := sha256.Sum256([]byte(user))
	p := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(u[:], h.userHash[:])&subtle.ConstantTimeCompare(p[:], h.passHash[:]) == 1
}

func (h *Handler) metadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/fhir+json")
	_, _ = w.Write(h.capability)
}

func (h *Handler) read(w http.ResponseWriter, r *http.Request) {
	raw, err := h.store.Read(r.PathValue("type"), r.PathValue("id"))
	h.writeResource(w, raw, http.StatusOK, err)
}

func (h *Handler) vread(w http.ResponseWriter, r *http.Request) {
	raw, err := h.store.VRead(r.PathValue("type"), r.PathValue("id"), r.PathValue("vid"))
	h.writeResource(w, raw, http.StatusOK, err)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	typ := r.PathValue("type")
	raw, id, err := h.store.Create(typ, body)
	if err == nil {
		w.Header().Set("Location", baseURL(r)+"/"+typ+"/"+id+"/_history/1")
	}
	h.writeResource(w, raw, http.StatusCreated, err)
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	raw, created, err := h.store.Update(r.PathValue("type"), r.PathValue("id"), body)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	h.writeResource(w, raw, status, err)
}

func (h *Handler) search(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", "unreadable search form")
			return
		}
		params = r.Form
	}
	h.runSearch(w, r, r.PathValue("type"), params)
}

func (h *Handler) compartmentSearch(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	params.Add("patient", "Patient/"+r.PathValue("id"))
	h.runSearch(w, r, r.PathValue("type"), params)
}

func (h *Handler) runSearch(w http.ResponseWriter, r *http.Request, typ string, params url.Values) {
	res, err := h.store.Search(typ, params)
	if err != nil {
		h.writeError(w, err)
		return
	}
	base := baseURL(r)
	entries := make([]json.RawMessage, 0, len(res.Matches))
	for _, m := range res.Matches {
		mode := "match"
		if m.Include {
			mode = "include"
		}
		e, err := json.Marshal(struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Search   map[string]any  `json:"search"`
		}{base + "/" + m.Type + "/" + m.ID, m.Raw, map[string]any{"mode": mode}})
		if err != nil {
			h.writeError(w, err)
			return
		}
		entries = append(entries, e)
	}
	self := base + "/" + typ
	if q := params.Encode(); q != "" {
		self += "?" + q
	}
	links := []map[string]string{{"relation": "self", "url": self}}
	if res.Next {
		next := cloneValues(params)
		next.Set("_offset", strconv.Itoa(res.Offset+res.Count))
		links = append(links, map[string]string{"relation": "next", "url": base + "/" + typ + "?" + next.Encode()})
	}
	bundle := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": res.Total, "link": links}
	if len(entries) > 0 {
		bundle["entry"] = entries
	}
	b, err := json.Marshal(bundle)
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	_, _ = w.Write(b)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func (h *Handler) writeResource(w http.ResponseWriter, raw []byte, status int, err error) {
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

func (h *Handler) writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeOutcome(w, http.StatusNotFound, "not-found", "resource not found")
	case errors.Is(err, ErrInvalid):
		writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
	default:
		h.log.Error("demoehr: internal error", "error", err)
		writeOutcome(w, http.StatusInternalServerError, "exception", "internal error")
	}
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/fhir+json" && ct != "application/json" {
		writeOutcome(w, http.StatusUnsupportedMediaType, "not-supported", "send application/fhir+json")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeOutcome(w, http.StatusRequestEntityTooLarge, "too-costly", "body too large or unreadable")
		return nil, false
	}
	return body, true
}

// baseURL is the server's base URL as the client sees it: behind a proxy,
// from X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Prefix.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" && !strings.ContainsAny(fh, "/ ,") {
		host = fh
	}
	prefix := r.Header.Get("X-Forwarded-Prefix")
	if !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "?# ,") {
		prefix = ""
	}
	return scheme + "://" + host + strings.TrimRight(prefix, "/")
}

func writeOutcome(w http.ResponseWriter, status int, code, diagnostics string) {
	b, _ := json.Marshal(map[string]any{
		"resourceType": "OperationOutcome",
		"issue":        []any{map[string]string{"severity": "error", "code": code, "diagnostics": diagnostics}},
	})
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func capabilityStatement() []byte {
	var resources []any
	for _, t := range resourceTypes {
		resources = append(resources, map[string]any{
			"type": t,
			"interaction": []any{
				map[string]string{"code": "read"}, map[string]string{"code": "vread"},
				map[string]string{"code": "search-type"}, map[string]string{"code": "create"},
				map[string]string{"code": "update"},
			},
		})
	}
	b, _ := json.Marshal(map[string]any{
		"resourceType": "CapabilityStatement", "status": "active", "date": seedEpoch.Format("2006-01-02"),
		"kind": "instance", "fhirVersion": "4.0.1", "format": []string{"json"},
		"software": map[string]string{"name": "fhirgate demo EHR"},
		"rest":     []any{map[string]any{"mode": "server", "resource": resources}},
	})
	return b
}
