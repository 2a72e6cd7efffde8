package authorize

import (
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Grant computes what may be granted before the user's own choice:
// requested narrowed by the client's registered scopes, then by the user's
// role. system/ scopes are never granted in this (user-facing) flow, and the
// `launch` scope only with a bound EHR launch.
func Grant(requested, clientScopes, roleScopes scope.Set, ehrLaunch bool) scope.Set {
	granted := scope.Narrow(scope.Narrow(withoutSystem(requested), clientScopes), roleScopes)
	if !ehrLaunch {
		granted = without(granted, scope.Launch)
	}
	return granted
}

// Checked keeps the scopes of candidate whose exact text the user left
// checked. Values that are not in candidate are ignored, so a tampered form
// can only narrow the grant.
func Checked(candidate scope.Set, checked []string) scope.Set {
	keep := make(map[string]bool, len(checked))
	for _, c := range checked {
		keep[c] = true
	}
	var out scope.Set
	for _, s := range candidate {
		if keep[s.String()] {
			out = append(out, s)
		}
	}
	return out
}

// withoutSystem drops system/ resource scopes.
func withoutSystem(s scope.Set) scope.Set {
	var out scope.Set
	for _, sc := range s {
		if sc.Kind == scope.Resource && sc.Context == scope.System {
			continue
		}
		out = append(out, sc)
	}
	return out
}

// without drops the scopes of kind k.
func without(s scope.Set, k scope.Kind) scope.Set {
	var out scope.Set
	for _, sc := range s {
		if sc.Kind != k {
			out = append(out, sc)
		}
	}
	return out
}

// hasPatientResource reports whether s holds a patient/ resource scope.
func hasPatientResource(s scope.Set) bool {
	for _, sc := range s {
		if sc.Kind == scope.Resource && sc.Context == scope.Patient {
			return true
		}
	}
	return false
}

// clientScopes parses a client's registered scopes; unknown or malformed
// entries grant nothing.
func clientScopes(c *storage.Client) scope.Set {
	set, _, err := scope.ParseSet(c.Scope)
	if err != nil {
		return nil
	}
	return set
}

// clientAllowed is requested narrowed by the client's registered scopes.
func clientAllowed(c *storage.Client, requested scope.Set) scope.Set {
	return scope.Narrow(requested, clientScopes(c))
}
