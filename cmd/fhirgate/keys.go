package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// keyJSON is the stable --json form of a signing key.
type keyJSON struct {
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	Active    bool   `json:"active"`
	CreatedAt string `json:"created_at"`
	RetiredAt string `json:"retired_at,omitempty"`
}

func newKeysCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Signing keys"}
	cmd.AddCommand(newKeysListCmd(e, g), newKeysRotateCmd(e, g))
	return cmd
}

// openKeys opens the key manager (generating the first keys if none exist).
func openKeys(ctx context.Context, e *env, cfg *config.Config, s storage.Store) (*keys.Manager, error) {
	log := newLogger(e.stderr, cfg.Log.Level)
	return app.OpenKeys(ctx, cfg, s, log, audit.LogAuditor{Logger: log, Now: e.now}, e.now)
}

func newKeysListCmd(e *env, g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List signing keys, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, cfg *config.Config, s storage.Store) error {
				m, err := openKeys(ctx, e, cfg, s)
				if err != nil {
					return err
				}
				ks := m.Keys()
				out := make([]keyJSON, 0, len(ks))
				for _, k := range ks {
					out = append(out, keyJSON{KID: k.KID, Alg: k.Alg, Active: k.Active,
						CreatedAt: timeOrEmpty(k.CreatedAt), RetiredAt: timeOrEmpty(k.RetiredAt)})
				}
				if asJSON {
					return printJSON(e.stdout, out)
				}
				tw := newTable(cmd)
				fmt.Fprintln(tw, "KID\tALG\tACTIVE\tCREATED\tRETIRED")
				for _, k := range out {
					fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", k.KID, k.Alg, k.Active, k.CreatedAt, k.RetiredAt)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newKeysRotateCmd(e *env, g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Add and activate a new key per algorithm; old keys keep verifying (a running server picks this up within 30 s)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, cfg *config.Config, s storage.Store) error {
				m, err := openKeys(ctx, e, cfg, s)
				if err != nil {
					return err
				}
				kids, err := m.Rotate(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e.stdout, map[string][]string{"kids": kids})
				}
				for _, k := range kids {
					fmt.Fprintln(e.stdout, "activated", k)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print JSON: {"kids": [...]}`)
	return cmd
}
