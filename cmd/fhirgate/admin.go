package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/app"
)

func newAdminCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Admin API access"}
	cmd.AddCommand(newAdminTokenCmd(e, g))
	return cmd
}

func newAdminTokenCmd(e *env, g *globalFlags) *cobra.Command {
	var name string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create an admin API token (printed once; only its hash is stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(e, g, nil)
			if err != nil {
				return err
			}
			text, t, err := adminapi.NewToken(name, ttl, e.now())
			if err != nil {
				return err
			}
			store := adminapi.NewFileTokens(app.AdminTokensPath(cfg))
			if err := store.AddToken(cmd.Context(), t); err != nil {
				return fmt.Errorf("admin token: %w", err)
			}
			fmt.Fprintf(e.stderr, "admin token %s (%s) stored in %s; shown once:\n", t.ID, t.Name, store.Path())
			_, err = fmt.Fprintln(e.stdout, text)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "admin", "who or what the token is for")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (e.g. 720h); 0 = no expiry")
	cmd.AddCommand(newAdminTokenListCmd(e, g), newAdminTokenRevokeCmd(e, g))
	return cmd
}

func newAdminTokenListCmd(e *env, g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List admin tokens (never the tokens themselves)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(e, g, nil)
			if err != nil {
				return err
			}
			ts, err := adminapi.NewFileTokens(app.AdminTokensPath(cfg)).ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			type row struct {
				ID        string `json:"id"`
				Name      string `json:"name"`
				CreatedAt string `json:"created_at"`
				ExpiresAt string `json:"expires_at,omitempty"`
			}
			out := make([]row, 0, len(ts))
			for _, t := range ts {
				out = append(out, row{t.ID, t.Name, timeOrEmpty(t.CreatedAt), timeOrEmpty(t.ExpiresAt)})
			}
			if asJSON {
				return printJSON(e.stdout, out)
			}
			tw := newTable(cmd)
			fmt.Fprintln(tw, "ID\tNAME\tCREATED\tEXPIRES")
			for _, r := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Name, r.CreatedAt, r.ExpiresAt)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAdminTokenRevokeCmd(e *env, g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an admin token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(e, g, nil)
			if err != nil {
				return err
			}
			if err := adminapi.NewFileTokens(app.AdminTokensPath(cfg)).RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, "revoked", args[0])
			return err
		},
	}
}

// adminClient calls the running server's admin API. Without
// FHIRGATE_ADMIN_TOKEN it mints a two-minute token in the token file (the
// caller can read the data directory, as every other admin command must)
// and revokes it afterwards.
type adminClient struct {
	base    string
	token   string
	http    *http.Client
	cleanup func()
}

type adminFlags struct {
	url    string
	caFile string
}

func (f *adminFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "admin-url", "", "admin API URL (default: from admin.addr)")
	cmd.Flags().StringVar(&f.caFile, "ca-file", "", "PEM CA verifying the admin listener's certificate")
}

func newAdminClient(ctx context.Context, e *env, g *globalFlags, f *adminFlags) (*adminClient, error) {
	cfg, err := loadConfig(e, g, nil)
	if err != nil {
		return nil, err
	}
	base := f.url
	if base == "" {
		if cfg.Admin.Addr == "" {
			return nil, errors.New("admin.addr is not configured: the admin API is off (set admin.addr, or pass --admin-url)")
		}
		scheme := "http"
		if cfg.TLSEnabled() {
			scheme = "https"
		}
		base = scheme + "://" + cfg.Admin.Addr
	}
	c := &adminClient{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 30 * time.Second}, cleanup: func() {}}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificates in %s", f.caFile)
		}
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	if t, ok := e.lookupEnv("FHIRGATE_ADMIN_TOKEN"); ok && t != "" {
		c.token = t
		return c, nil
	}
	store := adminapi.NewFileTokens(app.AdminTokensPath(cfg))
	text, t, err := adminapi.NewToken("cli", 2*time.Minute, e.now())
	if err != nil {
		return nil, err
	}
	if err := store.AddToken(ctx, t); err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	c.token = text
	c.cleanup = func() { _ = store.RevokeToken(context.WithoutCancel(ctx), t.ID) }
	return c, nil
}

func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("admin API: %s: %s %s", resp.Status, e.Error, e.Description)
	}
	return json.Unmarshal(body, out)
}

func newAnomaliesCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "anomalies", Short: "Suspicious activity: list and clear anomalies (through the admin API)"}
	cmd.AddCommand(newAnomaliesListCmd(e, g), newAnomaliesClearCmd(e, g))
	return cmd
}

func newAnomaliesListCmd(e *env, g *globalFlags) *cobra.Command {
	var f adminFlags
	var asJSON, all bool
	var subject string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List anomalies, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAdminClient(cmd.Context(), e, g, &f)
			if err != nil {
				return err
			}
			defer c.cleanup()
			q := url.Values{}
			if all {
				q.Set("all", "true")
			}
			if subject != "" {
				q.Set("subject", subject)
			}
			var out struct {
				Anomalies []anomaly.Anomaly `json:"anomalies"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/admin/anomalies?"+q.Encode(), &out); err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, out.Anomalies)
			}
			tw := newTable(cmd)
			fmt.Fprintln(tw, "ID\tRULE\tACTION\tSUBJECT\tRAISED\tUNTIL\tCLEARED\tDETAIL")
			for _, a := range out.Anomalies {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Rule, a.Action, a.Subject,
					timeOrEmpty(a.RaisedAt), timeOrEmpty(a.Until), timeOrEmpty(a.ClearedAt), a.Detail)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&all, "all", false, "include cleared anomalies")
	cmd.Flags().StringVar(&subject, "subject", "", "only anomalies about client:<id>, user:<id> or ip:<address>")
	return cmd
}

func newAnomaliesClearCmd(e *env, g *globalFlags) *cobra.Command {
	var f adminFlags
	var subject string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "clear [ID]",
		Short: "Clear an anomaly (or every anomaly about --subject), lifting its throttle or suspension",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (subject != "") {
				return errors.New("give an anomaly ID or --subject, not both")
			}
			c, err := newAdminClient(cmd.Context(), e, g, &f)
			if err != nil {
				return err
			}
			defer c.cleanup()
			path := "/admin/anomalies/clear?subject=" + url.QueryEscape(subject)
			if len(args) == 1 {
				path = "/admin/anomalies/" + url.PathEscape(args[0]) + "/clear"
			}
			var out struct {
				Cleared []anomaly.Anomaly `json:"cleared"`
			}
			if err := c.do(cmd.Context(), http.MethodPost, path, &out); err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, out.Cleared)
			}
			for _, a := range out.Cleared {
				fmt.Fprintf(e.stdout, "cleared %s (%s %s %s)\n", a.ID, a.Rule, a.Action, a.Subject)
			}
			if len(out.Cleared) == 0 {
				fmt.Fprintln(e.stdout, "nothing to clear")
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "clear every anomaly about client:<id>, user:<id> or ip:<address>")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
