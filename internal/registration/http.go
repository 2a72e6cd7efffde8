package registration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Register adds the registration endpoints to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /register", h.handleRegister)
	mux.HandleFunc("GET /register/{client_id}", h.handleRead)
	mux.HandleFunc("PUT /register/{client_id}", h.handleUpdate)
	mux.HandleFunc("DELETE /register/{client_id}", h.handleDelete)
}

func who(r *http.Request) caller {
	return caller{ip: httpx.ClientIP(r), userAgent: r.UserAgent()}
}

func (h *Handler) handleRegister(w http.ResponseWriter, r *http.Request) {
	tok, err := bearer(r)
	if err != nil {
		h.writeError(w, r, h.refuse(r.Context(), "", who(r), err))
		return
	}
	// The body is read before the database is touched; its errors are
	// reported only after the token was checked.
	req, derr := decode(w, r)
	resp, err := h.register(r.Context(), tok, req, derr, who(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.NoStore(w)
	w.Header().Set("Location", resp.RegistrationClientURI)
	httpx.WriteJSON(w, http.StatusCreated, resp)
}

func (h *Handler) handleRead(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		// A read rotates the registration access token, so a HEAD request
		// would lose the new one with the discarded body.
		w.Header().Set("Allow", "GET, PUT, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id := r.PathValue("client_id")
	tok, err := bearer(r)
	if err != nil {
		h.writeError(w, r, h.refuse(r.Context(), id, who(r), err))
		return
	}
	resp, err := h.read(r.Context(), id, tok, who(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (h *Handler) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("client_id")
	tok, err := bearer(r)
	if err != nil {
		h.writeError(w, r, h.refuse(r.Context(), id, who(r), err))
		return
	}
	// Read the body before the store transaction starts, so a slow client
	// never holds it open.
	req, derr := decode(w, r)
	resp, err := h.update(r.Context(), id, tok, req, derr, who(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (h *Handler) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("client_id")
	tok, err := bearer(r)
	if err != nil {
		h.writeError(w, r, h.refuse(r.Context(), id, who(r), err))
		return
	}
	if err := h.remove(r.Context(), id, tok, who(r)); err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.NoStore(w)
	w.WriteHeader(http.StatusNoContent)
}

// writeError renders err as RFC 7591 §3.2.2 JSON. Token errors get a 401 with
// a Bearer challenge (RFC 6750 §3): without an error code when no token was
// sent, with error="invalid_token" otherwise.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if oauth.As(err).Code == oauth.InvalidToken {
		if errors.Is(err, errNoToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate", error="invalid_token"`)
		}
	}
	httpx.WriteOAuthError(w, r, h.logger, err)
}

// bearer returns the token of an `Authorization: Bearer` header, "" when
// there is none, or an invalid_token error for a malformed header.
func bearer(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", nil
	}
	if len(values) > 1 {
		return "", oauth.Errorf(oauth.InvalidToken, "send exactly one Authorization header")
	}
	scheme, tok, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", oauth.Errorf(oauth.InvalidToken, "the Authorization header must use the Bearer scheme")
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > 512 || strings.ContainsAny(tok, " \t\r\n") {
		return "", oauth.Errorf(oauth.InvalidToken, "the bearer token is malformed")
	}
	return tok, nil
}

// decode reads a JSON object body of at most MaxBodyBytes.
func decode(w http.ResponseWriter, r *http.Request) (*request, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, oauth.Errorf(oauth.InvalidClientMetadata, "the request body must be JSON (Content-Type: application/json)")
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	var req request
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return nil, oauth.Wrap(oauth.InvalidClientMetadata, fmt.Sprintf("the request body is larger than %d bytes", MaxBodyBytes), err)
		case errors.As(err, &ute) && ute.Field != "":
			return nil, oauth.Wrap(oauth.InvalidClientMetadata, fmt.Sprintf("%s has the wrong JSON type", ute.Field), err)
		case errors.As(err, &ute):
			return nil, oauth.Wrap(oauth.InvalidClientMetadata, "the request body must be a JSON object", err)
		default:
			return nil, oauth.Wrap(oauth.InvalidClientMetadata, "the request body is not valid JSON", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, oauth.Errorf(oauth.InvalidClientMetadata, "the request body must hold exactly one JSON object")
	}
	return &req, nil
}
