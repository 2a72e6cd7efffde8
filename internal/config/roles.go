package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/internal/scope"
)

// checkRoleScopes checks a role's scope list: non-empty, every scope
// well-formed and supported (an unknown scope in a role cap is a typo).
func checkRoleScopes(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must list at least one scope")
	}
	_, unknown, err := scope.ParseSet(s)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("unknown scopes %q", unknown)
	}
	return nil
}
