// Package web holds the authorization server's HTML pages (html/template,
// no JavaScript) and their embedded stylesheet.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"net/url"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/*
var staticFS embed.FS

// Page names.
const (
	PageError   = "error"
	PageMessage = "message"
	PageLogin   = "login"
	PagePicker  = "picker"
	PageConsent = "consent"
)

// ErrorPage is shown when a request cannot go on and must not be redirected.
type ErrorPage struct {
	Title   string
	Message string
}

// MessagePage shows a plain notice (e.g. after signing out).
type MessagePage struct {
	Title   string
	Message string
}

// LoginPage is the sign-in form: one text input (username) and one password input.
type LoginPage struct {
	Title      string
	ReqID      string // the authorization request in progress, if any
	CSRF       string
	ClientName string
	Username   string // echoed after a failed attempt
	Error      string
}

// PatientOption is one patient offered by the picker; Ref is "Patient/<id>".
type PatientOption struct {
	Ref       string
	Name      string
	BirthDate string
}

// PickerPage lets a clinician search the patient directory and pick one.
type PickerPage struct {
	Title      string
	ReqID      string
	CSRF       string
	ClientName string
	Query      string
	BirthDate  string
	Searched   bool
	Patients   []PatientOption
	Error      string
}

// ScopeItem is one scope checkbox; Value is the exact scope string.
type ScopeItem struct {
	ID          string // element id, unique on the page
	Value       string
	Description string
	Checked     bool
}

// ScopeGroup is the scopes about one data type.
type ScopeGroup struct {
	Label  string
	Scopes []ScopeItem
}

// ConsentPage asks the user to approve (some of) the requested scopes.
type ConsentPage struct {
	Title       string
	ReqID       string
	CSRF        string
	ClientName  string
	LogoURL     string // shown only when it is an https URL
	PatientName string
	UserName    string
	Groups      []ScopeGroup
	Offline     bool // access continues after sign-out (offline_access)
}

// Pages renders the embedded templates.
type Pages struct {
	t map[string]*template.Template
}

// Load parses the embedded templates.
func Load() (*Pages, error) {
	p := &Pages{t: map[string]*template.Template{}}
	for _, name := range append([]string{PageError, PageMessage, PageLogin, PagePicker, PageConsent}, peoplePages...) {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// Render writes page name with data to w. The page is rendered into a
// buffer first, so a template error never leaves half a page behind.
func (p *Pages) Render(w io.Writer, name string, data any) error {
	t, ok := p.t[name]
	if !ok {
		return fmt.Errorf("web: unknown page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("web: render %s: %w", name, err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// SafeLogoURL returns raw if it is an absolute https URL without
// credentials, and "" otherwise, so a page never loads a logo over http or
// from a javascript: or data: URL.
func SafeLogoURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return ""
	}
	return u.String()
}
