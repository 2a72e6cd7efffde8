package demoapp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// Record is the patient's data as the page shows it.
type Record struct {
	PatientID string
	Name      string
	Gender    string
	BirthDate string
	Sections  []Section
}

// Section is one resource type's list.
type Section struct {
	Title string
	Type  string
	// Note is shown instead of the rows when the type could not be read
	// (for example a scope the user did not approve).
	Note string
	Rows []Row
}

// Row is one resource, reduced to what a person reads.
type Row struct {
	What, Value, When string
}

// sections lists what the page shows, in order.
var sections = []struct{ title, typ, query string }{
	{"Conditions", "Condition", ""},
	{"Medications", "MedicationRequest", ""},
	{"Allergies", "AllergyIntolerance", ""},
	{"Observations", "Observation", "&_count=50"},
	{"Immunizations", "Immunization", ""},
}

// errSignedOut: the tokens no longer work; the user must sign in again.
var errSignedOut = errors.New("demoapp: signed out")

// fetchRecord reads the patient and their resources through the gateway
// with the session's token, refreshing it when it expired. It returns the
// token in use afterwards (it may be a refreshed one).
func (h *Handler) fetchRecord(ctx context.Context, tok *oauth2.Token, patient string) (*Record, *oauth2.Token, error) {
	oc, err := h.config(ctx)
	if err != nil {
		return nil, tok, err
	}
	cctx := h.clientCtx(ctx)
	ts := oc.TokenSource(cctx, tok)
	client := oauth2.NewClient(cctx, ts)
	current := func() *oauth2.Token {
		if t, err := ts.Token(); err == nil {
			return t
		}
		return tok
	}
	var p map[string]any
	if err := h.getJSON(ctx, client, h.opts.FHIRBase+"/Patient/"+url.PathEscape(patient), &p); err != nil {
		var st errStatus
		var re *oauth2.RetrieveError
		if (errors.As(err, &st) && st.code == http.StatusUnauthorized) || errors.As(err, &re) {
			return nil, nil, errSignedOut
		}
		return nil, current(), fmt.Errorf("reading the patient: %w", err)
	}
	rec := &Record{PatientID: patient, Name: humanName(p["name"]), Gender: str(p["gender"]), BirthDate: str(p["birthDate"])}
	for _, s := range sections {
		sec := Section{Title: s.title, Type: s.typ}
		var b map[string]any
		u := h.opts.FHIRBase + "/" + s.typ + "?patient=" + url.QueryEscape(patient) + s.query
		if err := h.getJSON(ctx, client, u, &b); err != nil {
			var st errStatus
			switch {
			case errors.As(err, &st) && st.code == http.StatusForbidden:
				sec.Note = "Not shared with this app."
			default:
				sec.Note = "Could not be read."
				h.opts.Logger.WarnContext(ctx, "demoapp: FHIR search failed", "type", s.typ, "error", err)
			}
		} else {
			entries, _ := b["entry"].([]any)
			for _, e := range entries {
				em, _ := e.(map[string]any)
				res, _ := em["resource"].(map[string]any)
				if res == nil || str(res["resourceType"]) != s.typ {
					continue // an OperationOutcome or an included resource
				}
				sec.Rows = append(sec.Rows, row(res))
			}
			if len(sec.Rows) == 0 {
				sec.Note = "None recorded."
			}
		}
		rec.Sections = append(rec.Sections, sec)
	}
	return rec, current(), nil
}

// row summarises a resource.
func row(r map[string]any) Row {
	switch str(r["resourceType"]) {
	case "Observation":
		return Row{What: concept(r["code"]), Value: quantity(r), When: date(str(r["effectiveDateTime"]))}
	case "Condition":
		return Row{What: concept(r["code"]), Value: concept(r["clinicalStatus"]), When: date(str(r["onsetDateTime"]))}
	case "MedicationRequest":
		v := str(r["status"])
		if d, ok := r["dosageInstruction"].([]any); ok && len(d) > 0 {
			if dm, ok := d[0].(map[string]any); ok && str(dm["text"]) != "" {
				v = str(dm["text"]) + " (" + v + ")"
			}
		}
		return Row{What: concept(r["medicationCodeableConcept"]), Value: v, When: date(str(r["authoredOn"]))}
	case "AllergyIntolerance":
		return Row{What: concept(r["code"]), Value: concept(r["clinicalStatus"])}
	case "Immunization":
		return Row{What: concept(r["vaccineCode"]), Value: str(r["status"]), When: date(str(r["occurrenceDateTime"]))}
	}
	return Row{What: str(r["resourceType"]) + "/" + str(r["id"])}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// concept is a CodeableConcept's text, or its first coding's display or code.
func concept(v any) string {
	m, _ := v.(map[string]any)
	if m == nil {
		return ""
	}
	if t := str(m["text"]); t != "" {
		return t
	}
	if cs, ok := m["coding"].([]any); ok {
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			if d := str(cm["display"]); d != "" {
				return d
			}
			if d := str(cm["code"]); d != "" {
				return d
			}
		}
	}
	return ""
}

func quantity(r map[string]any) string {
	q, _ := r["valueQuantity"].(map[string]any)
	if q == nil {
		return concept(r["valueCodeableConcept"])
	}
	v := ""
	switch n := q["value"].(type) {
	case float64:
		v = fmt.Sprintf("%g", n)
	case string:
		v = n
	}
	return strings.TrimSpace(v + " " + str(q["unit"]))
}

// humanName renders the first HumanName.
func humanName(v any) string {
	ns, _ := v.([]any)
	for _, n := range ns {
		m, _ := n.(map[string]any)
		if t := str(m["text"]); t != "" {
			return t
		}
		var parts []string
		if g, ok := m["given"].([]any); ok {
			for _, x := range g {
				parts = append(parts, str(x))
			}
		}
		parts = append(parts, str(m["family"]))
		if s := strings.TrimSpace(strings.Join(parts, " ")); s != "" {
			return s
		}
	}
	return ""
}

// date keeps the date part of a FHIR dateTime.
func date(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}
