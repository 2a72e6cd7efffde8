// Package auditapi serves the audit trail over HTTP: the admin query API
// (GET /admin/audit) and a patient's own access report (who opened my
// record, when, with which app), which the web pages also call as a plain
// function (AccessReport).
package auditapi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/export"
)

// ErrInvalid marks a refused query (bad parameter).
var ErrInvalid = errors.New("audit query: invalid parameter")

// ReportActions are the events a patient's access report lists: every FHIR
// request touching the patient's compartment (allowed or refused, including
// filtered results) and the grants that let an app in.
var ReportActions = []audit.Action{
	audit.ActionFHIRRequest, audit.ActionFHIRFiltered,
	audit.ActionTokenIssued, audit.ActionConsentGranted, audit.ActionConsentRevoked,
}

// ClientNamer resolves a client_id to the app's display name ("" if unknown).
type ClientNamer func(ctx context.Context, clientID string) string

// ReportQuery selects a page of a patient's access report.
type ReportQuery struct {
	Since, Until time.Time
	After        string // cursor from Report.Next
	Limit        int
}

// Access is one line of the report.
type Access struct {
	Time            time.Time `json:"time"`
	Action          string    `json:"action"`
	Allowed         bool      `json:"allowed"`
	Who             string    `json:"who,omitempty"`       // the user's fhirUser, else sub
	ClientID        string    `json:"client_id,omitempty"` // the app
	App             string    `json:"app,omitempty"`       // the app's name
	Interaction     string    `json:"interaction,omitempty"`
	Resource        string    `json:"resource,omitempty"` // Type or Type/id
	EntriesFiltered int       `json:"entries_filtered,omitempty"`
	Reason          string    `json:"reason,omitempty"` // why it was refused
}

// AppSummary totals one app's accesses on the page.
type AppSummary struct {
	ClientID string    `json:"client_id"`
	App      string    `json:"app,omitempty"`
	Count    int       `json:"count"`
	Last     time.Time `json:"last"`
}

// Report is one page of a patient's access report, oldest first.
type Report struct {
	Patient string       `json:"patient"`
	Items   []Access     `json:"items"`
	Apps    []AppSummary `json:"apps"`
	Next    string       `json:"next,omitempty"`
}

// AccessReport lists who accessed patient's record. patient is a Patient id
// ("123"; "Patient/123" is accepted).
func AccessReport(ctx context.Context, q export.Querier, patient string, rq ReportQuery, names ClientNamer) (Report, error) {
	patient = strings.TrimPrefix(patient, "Patient/")
	if patient == "" {
		return Report{}, fmt.Errorf("%w: patient is required", ErrInvalid)
	}
	page, err := q.Query(ctx, chain.Filter{Patient: patient, Actions: ReportActions,
		Since: rq.Since, Until: rq.Until, After: rq.After, Limit: rq.Limit})
	if err != nil {
		if errors.Is(err, chain.ErrBadCursor) {
			return Report{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return Report{}, err
	}
	rep := Report{Patient: patient, Items: []Access{}, Apps: []AppSummary{}, Next: page.Next}
	nameOf := map[string]string{}
	apps := map[string]*AppSummary{}
	for _, e := range page.Entries {
		ev := e.Event
		name, ok := nameOf[ev.ClientID]
		if !ok && names != nil && ev.ClientID != "" {
			name = names(ctx, ev.ClientID)
			nameOf[ev.ClientID] = name
		}
		a := Access{
			Time: ev.Time, Action: string(ev.Action), Allowed: ev.Outcome == audit.Success,
			Who: ev.FHIRUser, ClientID: ev.ClientID, App: name, Interaction: ev.Interaction,
			Resource: ev.ResourceType, EntriesFiltered: ev.EntriesFiltered,
		}
		if a.Who == "" {
			a.Who = ev.UserID
		}
		if ev.ResourceID != "" {
			a.Resource += "/" + ev.ResourceID
		}
		if !a.Allowed {
			a.Reason = ev.Reason
		}
		rep.Items = append(rep.Items, a)
		if ev.ClientID != "" {
			s := apps[ev.ClientID]
			if s == nil {
				s = &AppSummary{ClientID: ev.ClientID, App: name}
				apps[ev.ClientID] = s
			}
			s.Count++
			if ev.Time.After(s.Last) {
				s.Last = ev.Time
			}
		}
	}
	for _, s := range apps {
		rep.Apps = append(rep.Apps, *s)
	}
	sort.Slice(rep.Apps, func(i, j int) bool { return rep.Apps[i].Last.After(rep.Apps[j].Last) })
	return rep, nil
}
