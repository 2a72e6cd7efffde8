package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// clientJSON is the stable --json form of a client (RFC 7591 names).
type clientJSON struct {
	ClientID                 string   `json:"client_id"`
	ClientSecret             string   `json:"client_secret,omitempty"`
	ClientName               string   `json:"client_name"`
	TokenEndpointAuthMethod  string   `json:"token_endpoint_auth_method"`
	RedirectURIs             []string `json:"redirect_uris"`
	Scope                    string   `json:"scope"`
	GrantTypes               []string `json:"grant_types"`
	LaunchURI                string   `json:"launch_uri,omitempty"`
	LogoURI                  string   `json:"logo_uri,omitempty"`
	IDTokenSignedResponseAlg string   `json:"id_token_signed_response_alg,omitempty"`
	JWKSURI                  string   `json:"jwks_uri,omitempty"`
	TLSClientAuthSubjectDN   string   `json:"tls_client_auth_subject_dn,omitempty"`
	DPoPBoundAccessTokens    bool     `json:"dpop_bound_access_tokens,omitempty"`
	RequirePAR               bool     `json:"require_pushed_authorization_requests,omitempty"`
	Disabled                 bool     `json:"disabled,omitempty"`
	CreatedAt                string   `json:"created_at"`
}

func toClientJSON(c *storage.Client, secret string) clientJSON {
	return clientJSON{
		ClientID: c.ID, ClientSecret: secret, ClientName: c.Name, TokenEndpointAuthMethod: c.AuthMethod,
		RedirectURIs: c.RedirectURIs, Scope: c.Scope, GrantTypes: c.GrantTypes, LaunchURI: c.LaunchURI,
		LogoURI: c.LogoURI, IDTokenSignedResponseAlg: c.IDTokenSignedResponseAlg, JWKSURI: c.JWKSURI,
		TLSClientAuthSubjectDN: c.TLSClientAuthSubjectDN, DPoPBoundAccessTokens: c.DPoPBoundAccessTokens, RequirePAR: c.RequirePAR,
		Disabled: c.Disabled, CreatedAt: timeOrEmpty(c.CreatedAt),
	}
}

// describeErr turns an *oauth.Error from validation into its description.
func describeErr(err error) error {
	var oe *oauth.Error
	if errors.As(err, &oe) && oe.Code != oauth.ServerError {
		return fmt.Errorf("%s: %s", oe.Code, oe.Description)
	}
	return err
}

func newClientsCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "Manage OAuth clients (SMART apps)"}
	cmd.AddCommand(newClientsCreateCmd(e, g), newClientsListCmd(e, g), newClientsShowCmd(e, g),
		newClientsDeleteCmd(e, g), newRegistrationTokenCmd(e, g))
	return cmd
}

func newClientsCreateCmd(e *env, g *globalFlags) *cobra.Command {
	var (
		name, scope, authMethod, launchURI, logoURI, idTokenAlg, jwksFile, jwksURI string
		redirects, grantTypes                                                      []string
		public, asJSON                                                             bool
		subjectDN                                                                  string
		dpopBound, requirePAR                                                      bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Register a client; its secret (secret methods only) is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if public && cmd.Flags().Changed("auth-method") {
				return errors.New("--public and --auth-method exclude each other")
			}
			method := authMethod
			if public {
				method = string(oauth.AuthNone)
			}
			m := clientreg.Metadata{
				ClientName: name, RedirectURIs: redirects, Scope: splitScopes(scope),
				TokenEndpointAuthMethod: method, GrantTypes: grantTypes, LaunchURI: launchURI,
				LogoURI: logoURI, IDTokenSignedResponseAlg: idTokenAlg, JWKSURI: jwksURI,
				TLSClientAuthSubjectDN: subjectDN, DPoPBoundAccessTokens: dpopBound,
				RequirePushedAuthorizationRequests: requirePAR,
			}
			if jwksFile != "" {
				b, err := os.ReadFile(jwksFile)
				if err != nil {
					return fmt.Errorf("--jwks-file: %w", err)
				}
				if !json.Valid(b) {
					return fmt.Errorf("--jwks-file: %s is not JSON", jwksFile)
				}
				m.JWKS = b
			}
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				c, secret, err := app.CreateClient(ctx, s, m, e.now())
				if err != nil {
					return describeErr(err)
				}
				if asJSON {
					return printJSON(e.stdout, toClientJSON(c, secret))
				}
				fmt.Fprintf(e.stdout, "client_id: %s\n", c.ID)
				if secret != "" {
					fmt.Fprintf(e.stdout, "client_secret: %s\n(shown once: store it now)\n", secret)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "client name shown on the consent page")
	f.StringArrayVar(&redirects, "redirect-uri", nil, "redirect URI (repeatable; exact match; https, or http on a loopback IP)")
	f.StringVar(&scope, "scope", "", `space-separated scopes the client may be granted, e.g. "openid fhirUser launch/patient patient/*.rs"`)
	f.BoolVar(&public, "public", false, "public client (no secret; PKCE only)")
	f.StringVar(&authMethod, "auth-method", string(oauth.AuthClientSecretBasic),
		"client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth or self_signed_tls_client_auth")
	f.StringArrayVar(&grantTypes, "grant-type", nil, "grant type (repeatable; default authorization_code; client_credentials for SMART Backend Services with system/ scopes)")
	f.StringVar(&launchURI, "launch-uri", "", "EHR launch URL of the app")
	f.StringVar(&logoURI, "logo-uri", "", "logo shown on the consent page")
	f.StringVar(&idTokenAlg, "id-token-alg", "", "id_token signing algorithm: RS256 (default) or ES256")
	f.StringVar(&jwksFile, "jwks-file", "", "JWK Set file of the client's public keys (private_key_jwt, self_signed_tls_client_auth)")
	f.StringVar(&jwksFile, "jwks", "", "same as --jwks-file")
	f.StringVar(&subjectDN, "tls-subject-dn", "", `expected client certificate subject for tls_client_auth, e.g. "CN=backend,O=Example"`)
	f.BoolVar(&dpopBound, "dpop-bound", false, "the client only ever gets DPoP-bound access tokens (dpop_bound_access_tokens)")
	f.BoolVar(&requirePAR, "require-par", false, "the client must push its authorization requests to /par (require_pushed_authorization_requests)")
	f.StringVar(&jwksURI, "jwks-uri", "", "URL of the client's JWK Set (private_key_jwt)")
	f.BoolVar(&asJSON, "json", false, `print JSON: {"client_id": ..., "client_secret": ...}`)
	return cmd
}

func newClientsListCmd(e *env, g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List clients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				cs, err := s.ListClients(ctx)
				if err != nil {
					return err
				}
				out := make([]clientJSON, 0, len(cs))
				for i := range cs {
					out = append(out, toClientJSON(&cs[i], ""))
				}
				if asJSON {
					return printJSON(e.stdout, out)
				}
				tw := newTable(cmd)
				fmt.Fprintln(tw, "CLIENT ID\tNAME\tAUTH METHOD\tREDIRECT URIS")
				for _, c := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ClientID, c.ClientName, c.TokenEndpointAuthMethod, strings.Join(c.RedirectURIs, " "))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// clientIDArg takes the client id from --client-id or the single argument.
func clientIDArg(flag string, args []string) (string, error) {
	switch {
	case flag != "" && len(args) == 0:
		return flag, nil
	case flag == "" && len(args) == 1:
		return args[0], nil
	default:
		return "", errors.New("give the client id as --client-id ID or as one argument")
	}
}

func newClientsShowCmd(e *env, g *globalFlags) *cobra.Command {
	var id string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show [CLIENT_ID]",
		Short: "Show a client",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cid, err := clientIDArg(id, args)
			if err != nil {
				return err
			}
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				c, err := s.GetClient(ctx, cid)
				if errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("no client %q", cid)
				}
				if err != nil {
					return err
				}
				cj := toClientJSON(c, "")
				if asJSON {
					return printJSON(e.stdout, cj)
				}
				tw := newTable(cmd)
				fmt.Fprintf(tw, "client_id\t%s\nclient_name\t%s\ntoken_endpoint_auth_method\t%s\nredirect_uris\t%s\nscope\t%s\ngrant_types\t%s\nlaunch_uri\t%s\ncreated_at\t%s\n",
					cj.ClientID, cj.ClientName, cj.TokenEndpointAuthMethod, strings.Join(cj.RedirectURIs, " "),
					cj.Scope, strings.Join(cj.GrantTypes, " "), cj.LaunchURI, cj.CreatedAt)
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&id, "client-id", "", "client id")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newClientsDeleteCmd(e *env, g *globalFlags) *cobra.Command {
	var id string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "delete [CLIENT_ID]",
		Short: "Delete a client",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cid, err := clientIDArg(id, args)
			if err != nil {
				return err
			}
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				if err := app.DeleteClient(ctx, s, cid); err != nil {
					if errors.Is(err, storage.ErrNotFound) {
						return fmt.Errorf("no client %q", cid)
					}
					return err
				}
				if asJSON {
					return printJSON(e.stdout, map[string]string{"deleted": cid})
				}
				_, err := fmt.Fprintf(e.stdout, "deleted client %s\n", cid)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&id, "client-id", "", "client id")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newRegistrationTokenCmd(e *env, g *globalFlags) *cobra.Command {
	var ttl time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "registration-token",
		Short: "Issue an initial access token for dynamic client registration (RFC 7591)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				now := e.now()
				tok, err := app.NewRegistrationToken(ctx, s, ttl, now)
				if err != nil {
					return err
				}
				exp := now.Add(ttl).UTC().Format(time.RFC3339)
				if asJSON {
					return printJSON(e.stdout, map[string]string{"registration_token": tok, "expires_at": exp})
				}
				_, err = fmt.Fprintf(e.stdout, "registration token (valid until %s, shown once):\n%s\n", exp, tok)
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime of the token")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print JSON: {"registration_token": ..., "expires_at": ...}`)
	return cmd
}
