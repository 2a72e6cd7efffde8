package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// userJSON is the stable --json form of a user.
type userJSON struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	Role        string `json:"role"`
	FHIRUser    string `json:"fhir_user,omitempty"`
	CreatedAt   string `json:"created_at"`
	LockedUntil string `json:"locked_until,omitempty"`
}

func toUserJSON(u *storage.User) userJSON {
	return userJSON{ID: u.ID, Username: u.Username, Role: string(u.Role), FHIRUser: u.FHIRUser,
		CreatedAt: timeOrEmpty(u.CreatedAt), LockedUntil: timeOrEmpty(u.LockedUntil)}
}

func newUsersCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage local user accounts"}
	cmd.AddCommand(newUsersCreateCmd(e, g), newUsersListCmd(e, g), newUsersDeleteCmd(e, g), newUsersMFAProvisionCmd(e, g))
	return cmd
}

func newUsersCreateCmd(e *env, g *globalFlags) *cobra.Command {
	var username, pw, role, fhirUser string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a user (password from --password, FHIRGATE_PASSWORD or the first line of stdin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("password") {
				var err error
				if pw, err = readPassword(e); err != nil {
					return err
				}
			}
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				u, err := app.CreateUser(ctx, s, app.NewUser{
					Username: username, Password: pw, Role: storage.Role(role), FHIRUser: fhirUser,
				}, e.passwordParams, e.now())
				if errors.Is(err, storage.ErrConflict) {
					return fmt.Errorf("username %q is taken", username)
				}
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e.stdout, toUserJSON(u))
				}
				_, err = fmt.Fprintf(e.stdout, "created user %s (id %s, role %s)\n", u.Username, u.ID, u.Role)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&username, "username", "", "login name (required)")
	f.StringVar(&pw, "password", "", "password (prefer FHIRGATE_PASSWORD or stdin: flags show in ps)")
	f.StringVar(&role, "role", "", "patient, clinician or admin (required)")
	f.StringVar(&fhirUser, "fhir-user", "", "FHIR reference of the user, e.g. Patient/123 or Practitioner/9")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("username")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

// readPassword takes FHIRGATE_PASSWORD, else the first line of stdin.
func readPassword(e *env) (string, error) {
	if v, ok := e.lookupEnv("FHIRGATE_PASSWORD"); ok && v != "" {
		return v, nil
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err != nil {
			return "", fmt.Errorf("no password: give --password, FHIRGATE_PASSWORD or a line on stdin")
		}
	}
	return line, nil
}

func newUsersListCmd(e *env, g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				us, err := s.ListUsers(ctx)
				if err != nil {
					return err
				}
				out := make([]userJSON, 0, len(us))
				for i := range us {
					out = append(out, toUserJSON(&us[i]))
				}
				if asJSON {
					return printJSON(e.stdout, out)
				}
				tw := newTable(cmd)
				fmt.Fprintln(tw, "USERNAME\tROLE\tFHIR USER\tID")
				for _, u := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, u.Role, u.FHIRUser, u.ID)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newUsersDeleteCmd(e *env, g *globalFlags) *cobra.Command {
	var username string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				if err := app.DeleteUser(ctx, s, username); err != nil {
					if errors.Is(err, storage.ErrNotFound) {
						return fmt.Errorf("no user %q", username)
					}
					return err
				}
				if asJSON {
					return printJSON(e.stdout, map[string]string{"deleted": username})
				}
				_, err := fmt.Fprintf(e.stdout, "deleted user %s\n", username)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&username, "username", "", "login name (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("username")
	return cmd
}

func newUsersMFAProvisionCmd(e *env, g *globalFlags) *cobra.Command {
	var username string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "mfa-provision",
		Short: "Create a user's TOTP key to hand over out of band (login.mfa_enrolment: provisioned)",
		Long: "Creates a fresh TOTP key for the user's first second factor, replacing an unconfirmed one, and\n" +
			"prints it once (otpauth URI and base32 key). Give it to the user over a channel other than their\n" +
			"password; they add it to an authenticator app and confirm it with a first code on /mfa/enrol.\n" +
			"A confirmed second factor must be reset first (admin console).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, cfg *config.Config, s storage.Store) error {
				u, err := findUser(ctx, s, username)
				if err != nil {
					return err
				}
				kek, err := app.KEK(cfg)
				if err != nil {
					return err
				}
				log := newLogger(e.stderr, cfg.Log.Level)
				svc, err := mfa.New(mfa.Options{Store: s, KEK: kek, Auditor: audit.LogAuditor{Logger: log, Now: e.now}, Logger: log, Now: e.now})
				if err != nil {
					return err
				}
				uri, key, err := svc.Provision(ctx, u.ID, u.Username, "cli")
				if errors.Is(err, mfa.ErrAlreadyEnrolled) {
					return fmt.Errorf("user %q already has a confirmed second factor; reset it first", username)
				} else if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e.stdout, map[string]string{"username": u.Username, "otpauth_uri": uri, "key": key})
				}
				_, err = fmt.Fprintf(e.stdout, "otpauth URI: %s\nkey: %s\nGive this to %s out of band; it is not shown again.\n", uri, key, u.Username)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&username, "username", "", "login name (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("username")
	return cmd
}
