package web

import "time"

// Pages of the people's side: second factor, account and admin console.
const (
	PageSignIn       = "signin"        // sign-in outside an authorization request
	PageMFA          = "mfa"           // enter a one-time code
	PageMFAEnrol     = "mfa_enrol"     // scan the QR code, confirm a first code
	PageMFARecovery  = "mfa_recovery"  // recovery codes, shown once
	PageApps         = "apps"          // connected apps
	PageAccessReport = "access_report" // who accessed my record
	PageConsole      = "console"       // admin console
)

// peoplePages are loaded with the authorization pages.
var peoplePages = []string{PageSignIn, PageMFA, PageMFAEnrol, PageMFARecovery, PageApps, PageAccessReport, PageConsole}

// Nav is the signed-in navigation shown on account and console pages.
type Nav struct {
	UserName string
	CSRF     string // for the sign-out form
	Admin    bool   // show the console link
	TwoStep  bool   // the session passed a second factor (else offer to set one up)
}

// SignInPage signs a user in to the account pages or the console; Next is
// the local path to return to.
type SignInPage struct {
	Title    string
	CSRF     string
	Next     string
	Username string
	Error    string
}

// MFAPage asks for a one-time or recovery code.
type MFAPage struct {
	Title string
	CSRF  string
	Next  string
	Error string
}

// MFAEnrolPage shows the QR code (an image URL on this server) and the key
// for manual entry, and asks for a first code. Without a Key (one an
// administrator handed over out of band) it only asks for the code.
type MFAEnrolPage struct {
	Title    string
	CSRF     string
	Next     string
	QRURL    string
	Key      string // base32, grouped for reading
	Required bool   // the user's role requires a second factor
	Error    string
}

// MFARecoveryPage lists the recovery codes once.
type MFARecoveryPage struct {
	Title string
	Codes []string
	Next  string
}

// AppRow is one connected app.
type AppRow struct {
	ClientID  string
	Name      string
	LogoURL   string
	Scopes    []string // plain-language descriptions
	Offline   bool
	Since     time.Time // consent time, zero if none
	LastUsed  time.Time // zero if never
	LiveCount int
}

// AppsPage is the connected-apps page.
type AppsPage struct {
	Title  string
	Nav    Nav
	Apps   []AppRow
	Notice string
	Error  string
}

// AccessRow is one line of the access report.
type AccessRow struct {
	Time     time.Time
	Who      string
	App      string
	What     string // plain language
	Resource string
	Allowed  bool
	Reason   string
}

// AccessReportPage lists who accessed the signed-in patient's record.
type AccessReportPage struct {
	Title   string
	Nav     Nav
	Rows    []AccessRow
	Next    string // cursor for the next (newer) page
	Enabled bool   // an audit trail is configured
	Error   string
}

// ConsolePage is the admin console; Section selects what is shown.
type ConsolePage struct {
	Title            string
	Nav              Nav
	Section          string // "clients", "client", "users", "audit", "anomalies", "keys"
	Notice           string
	Error            string
	Secret           string // a new client secret, shown once
	Clients          []ConsoleClient
	Client           *ConsoleClient // the one being edited
	Users            []ConsoleUser
	Audit            []ConsoleAuditRow
	Query            map[string]string // the audit search form's values
	AuditNext        string
	Anomalies        []ConsoleAnomaly
	Keys             []ConsoleKey
	AnomaliesEnabled bool
	AuditEnabled     bool
}

// ConsoleClient is a client row or edit form.
type ConsoleClient struct {
	ID           string
	Name         string
	AuthMethod   string
	RedirectURIs string // one per line
	Scope        string
	LogoURI      string
	Disabled     bool
	Confidential bool
}

// ConsoleUser is a user row.
type ConsoleUser struct {
	ID       string
	Username string
	Role     string
	FHIRUser string
	Locked   bool
	MFA      bool
}

// ConsoleAuditRow is one audit entry.
type ConsoleAuditRow struct {
	Time     time.Time
	Action   string
	Outcome  string
	User     string
	Client   string
	Patient  string
	SourceIP string
	Reason   string
}

// ConsoleAnomaly is one anomaly.
type ConsoleAnomaly struct {
	ID       string
	Rule     string
	Action   string
	Subject  string
	Detail   string
	RaisedAt time.Time
	Cleared  bool
}

// ConsoleKey is one signing key.
type ConsoleKey struct {
	KID       string
	Alg       string
	Active    bool
	CreatedAt time.Time
	RetiredAt time.Time
}

// funcs are the template helpers.
var funcs = map[string]any{
	// when formats a time for people ("" for the zero time).
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2 Jan 2006, 15:04 UTC")
	},
	// iso is the machine-readable form for <time datetime>.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// dict builds a map from key, value pairs for sub-templates.
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok {
				m[k] = kv[i+1]
			}
		}
		return m
	},
}
