package health

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/httpx"
)

// Register adds GET /healthz and GET /readyz to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", h.live)
	mux.HandleFunc("GET /readyz", h.ready)
}

func (h *Handler) live(w http.ResponseWriter, _ *http.Request) {
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	rep := h.Ready(r.Context())
	status := http.StatusOK
	if !rep.Ready {
		status = http.StatusServiceUnavailable
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, status, rep)
}
