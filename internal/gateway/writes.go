package gateway

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// writeRefusal is a refused write.
type writeRefusal struct {
	status      int
	code        string
	diagnostics string
	reason      string
	expr        string
}

// checkWrites makes sure a write keeps inside what the token may touch: a
// created or updated resource must lie in the patient's compartment and
// match any granular scope query, and an existing resource that is updated,
// patched or deleted must already be inside it. Batch and transaction
// entries are checked one by one. It answers the client and returns false
// when the write is refused.
func (h *Handler) checkWrites(ctx context.Context, w http.ResponseWriter, r *http.Request, ev audit.Event, x *exchange, entries []fhir.BundleEntryRequest) bool {
	var ref *writeRefusal
	switch x.req.Interaction {
	case fhir.Create, fhir.Update:
		body, err := h.readBody(w, r)
		if err != nil {
			h.refuseBody(w, r, ev, err)
			return false
		}
		x.body = body
		x.conditional = r.Header.Get("If-None-Exist") != ""
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != fhirJSON && mt != "application/json" {
			ref = &writeRefusal{status: http.StatusUnsupportedMediaType, code: fhir.CodeNotSupported,
				diagnostics: "send resources as application/fhir+json", reason: "write body not JSON"}
			break
		}
		ref = h.checkWrite(ctx, x, x.req, body, "")
	case fhir.Patch, fhir.Delete:
		ref = h.checkWrite(ctx, x, x.req, nil, "")
	case fhir.Batch, fhir.Transaction:
		for _, e := range entries {
			switch e.Request.Interaction {
			case fhir.Create, fhir.Update, fhir.Patch, fhir.Delete:
			default:
				continue
			}
			ctxEntry := *x
			ctxEntry.decision = policy.Decide(x.v.principal, e.Request)
			expr := fmt.Sprintf("Bundle.entry[%d]", e.Index)
			if !ctxEntry.decision.Allow {
				ref = &writeRefusal{status: http.StatusForbidden, code: fhir.CodeForbidden,
					diagnostics: expr + " is not permitted", reason: expr + ": " + ctxEntry.decision.Reason, expr: expr}
				break
			}
			if ref = h.checkWrite(ctx, &ctxEntry, e.Request, e.Resource, expr); ref != nil {
				break
			}
		}
	}
	if ref == nil {
		return true
	}
	var exprs []string
	if ref.expr != "" {
		exprs = []string{ref.expr}
	}
	h.denyExpr(w, r, ev, ref.status, ref.code, ref.diagnostics, ref.reason, exprs)
	return false
}

// checkWrite checks one write (a request or a Bundle entry named expr).
func (h *Handler) checkWrite(ctx context.Context, x *exchange, req fhir.Request, body []byte, expr string) *writeRefusal {
	c := x.decision.Constraints
	where := "the resource"
	if expr != "" {
		where = expr
	}
	refuse := func(reason string) *writeRefusal {
		return &writeRefusal{status: http.StatusForbidden, code: fhir.CodeForbidden,
			diagnostics: where + " would lie outside what the access token permits", reason: reason, expr: expr}
	}
	if req.Interaction == fhir.Create || req.Interaction == fhir.Update {
		if len(body) == 0 {
			return &writeRefusal{status: http.StatusBadRequest, code: fhir.CodeInvalid, diagnostics: where + " has no resource", reason: "write without body", expr: expr}
		}
		typ, id, err := fhir.ResourceIdentity(body)
		if err != nil {
			return &writeRefusal{status: http.StatusBadRequest, code: fhir.CodeInvalid, diagnostics: where + " is not a FHIR JSON resource", reason: err.Error(), expr: expr}
		}
		if typ != req.Type || (req.Interaction == fhir.Update && id != req.ID) {
			return &writeRefusal{status: http.StatusBadRequest, code: fhir.CodeInvalid,
				diagnostics: where + " does not match the request URL (resourceType or id)", reason: "body type/id mismatch", expr: expr}
		}
		if c.Patient != "" {
			if fhir.PatientCompartmentParams(typ) == nil {
				return refuse("write of " + typ + " (outside any patient compartment) with a patient-limited token")
			}
			in, err := fhir.InPatientCompartment(body, c.Patient)
			if err != nil || !in {
				return refuse("written " + typ + " not in the compartment of Patient/" + c.Patient)
			}
		}
		if len(c.Queries) > 0 && !matchesAnyQuery(body, c.Queries) {
			return refuse("written " + typ + " outside the granted scope query")
		}
	}
	if c.Patient == "" && len(c.Queries) == 0 {
		return nil
	}
	if x.conditional {
		// A conditional create searches the whole server: its answer would
		// reveal whether another patient's matching resource exists.
		return &writeRefusal{status: http.StatusBadRequest, code: fhir.CodeNotSupported,
			diagnostics: "conditional create (If-None-Exist) is not available with a patient-limited or query-limited token",
			reason:      "conditional create under compartment or query constraint", expr: expr}
	}
	if req.Interaction == fhir.Patch {
		// The result of a patch cannot be checked before it is applied.
		return &writeRefusal{status: http.StatusForbidden, code: fhir.CodeForbidden,
			diagnostics: "patch is not available with a patient-limited or query-limited token; use update",
			reason:      "patch under compartment or query constraint", expr: expr}
	}
	if req.Interaction == fhir.Update || req.Interaction == fhir.Delete {
		// The resource being replaced or deleted must be inside too.
		existing, status, err := h.fetchCurrent(ctx, x, req.Type, req.ID)
		switch {
		case err != nil:
			return &writeRefusal{status: http.StatusBadGateway, code: fhir.CodeException,
				diagnostics: "the upstream server is unavailable", reason: "pre-write check: " + err.Error(), expr: expr}
		case status == http.StatusNotFound || status == http.StatusGone:
			return nil // update as create; delete of nothing
		case status != http.StatusOK:
			return &writeRefusal{status: http.StatusBadGateway, code: fhir.CodeException,
				diagnostics: "the upstream server is unavailable", reason: fmt.Sprintf("pre-write check: upstream status %d", status), expr: expr}
		}
		if ok, why := h.allowResource(x, req.Type, req.ID, existing, nil, false); !ok {
			return &writeRefusal{status: http.StatusNotFound, code: fhir.CodeNotFound, diagnostics: "Resource not found",
				reason: "existing " + req.Type + "/" + req.ID + " " + why, expr: expr}
		}
	}
	return nil
}

// fetchCurrent reads the current version of type/id from the upstream.
func (h *Handler) fetchCurrent(ctx context.Context, x *exchange, typ, id string) ([]byte, int, error) {
	u := *x.up.URL
	u.Path = u.Path + "/" + typ + "/" + id
	u.RawPath, u.RawQuery = "", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", fhirJSON)
	resp, err := x.up.Transport.RoundTrip(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, resp.StatusCode, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.opts.MaxResponseBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if int64(len(body)) > h.opts.MaxResponseBytes {
		return nil, 0, errResponseTooLarge
	}
	return body, http.StatusOK, nil
}
