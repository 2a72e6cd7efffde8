package fhir

// OperationOutcome is the FHIR R4 OperationOutcome resource, as the gateway
// sends it in error responses.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

// Issue is one OperationOutcome.issue.
type Issue struct {
	// Severity is fatal, error, warning or information.
	Severity string `json:"severity"`
	// Code is an IssueType code such as "forbidden", "not-found", "security".
	Code string `json:"code"`
	// Diagnostics is human-readable text; it must not leak internal detail.
	Diagnostics string `json:"diagnostics,omitempty"`
	// Expression names the element concerned, such as "Bundle.entry[2]".
	Expression []string `json:"expression,omitempty"`
}

// Issue severities and common issue type codes (R4 valueset issue-type).
const (
	SeverityFatal       = "fatal"
	SeverityError       = "error"
	SeverityWarning     = "warning"
	SeverityInformation = "information"

	CodeInvalid       = "invalid"
	CodeSecurity      = "security"
	CodeLogin         = "login"
	CodeForbidden     = "forbidden"
	CodeNotFound      = "not-found"
	CodeNotSupported  = "not-supported"
	CodeTooCostly     = "too-costly"
	CodeException     = "exception"
	CodeTimeout       = "timeout"
	CodeThrottled     = "throttled"
	CodeProcessing    = "processing"
	CodeTransient     = "transient"
	CodeInformational = "informational"
)

// Outcome returns an OperationOutcome with one issue.
func Outcome(severity, code, diagnostics string) OperationOutcome {
	return OperationOutcome{
		ResourceType: "OperationOutcome",
		Issue:        []Issue{{Severity: severity, Code: code, Diagnostics: diagnostics}},
	}
}

// WithExpression returns o with expression added to its first issue.
func (o OperationOutcome) WithExpression(expression ...string) OperationOutcome {
	if len(o.Issue) == 0 {
		return o
	}
	issues := append([]Issue(nil), o.Issue...)
	issues[0].Expression = append(append([]string(nil), issues[0].Expression...), expression...)
	o.Issue = issues
	return o
}
