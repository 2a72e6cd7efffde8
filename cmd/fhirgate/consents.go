package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/revoke"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func newConsentsCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "consents", Short: "Users' consents to clients"}
	cmd.AddCommand(newConsentsRevokeCmd(e, g))
	return cmd
}

func newConsentsRevokeCmd(e *env, g *globalFlags) *cobra.Command {
	var user, client string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a user's consent to a client: forget it and revoke every token the client holds for the user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, cfg *config.Config, s storage.Store) error {
				u, err := findUser(ctx, s, user)
				if err != nil {
					return err
				}
				if _, err := s.GetClient(ctx, client); errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("no client %q", client)
				} else if err != nil {
					return err
				}
				log := newLogger(e.stderr, cfg.Log.Level)
				rc := revoke.Consents{Store: s, Auditor: audit.LogAuditor{Logger: log, Now: e.now}, Now: e.now}
				if err := rc.Revoke(ctx, u.ID, client, "cli"); errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("user %q has no consent and no live tokens for client %q", user, client)
				} else if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e.stdout, map[string]string{"revoked": "consent", "user_id": u.ID, "client_id": client})
				}
				_, err = fmt.Fprintf(e.stdout, "revoked the consent of %s to %s and every token issued from it\n", u.Username, client)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "username or user id (required)")
	f.StringVar(&client, "client", "", "client id (required)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("user")
	_ = cmd.MarkFlagRequired("client")
	return cmd
}

// findUser looks a user up by username, then by id.
func findUser(ctx context.Context, s storage.Users, name string) (*storage.User, error) {
	u, err := s.GetUserByUsername(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		u, err = s.GetUser(ctx, name)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("no user %q", name)
	}
	return u, err
}
