package config

import (
	"errors"
	"strings"
)

// checkRoleScopes checks a role's scope list.
func checkRoleScopes(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must list at least one scope")
	}
	return nil
}
