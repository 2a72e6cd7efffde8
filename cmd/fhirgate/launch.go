package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/launch"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func newLaunchCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "launch", Short: "EHR launch values"}
	var patient, encounter string
	var asJSON bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a single-use EHR launch value (valid 5 minutes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				now := e.now()
				v, err := app.CreateLaunch(ctx, s, patient, encounter, now)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e.stdout, map[string]string{
						"launch": v, "expires_at": now.Add(launch.DefaultTTL).UTC().Format(time.RFC3339),
					})
				}
				_, err = fmt.Fprintln(e.stdout, v)
				return err
			})
		},
	}
	create.Flags().StringVar(&patient, "patient", "", "patient in context, Patient/123 (required)")
	create.Flags().StringVar(&encounter, "encounter", "", "encounter in context, Encounter/9")
	create.Flags().BoolVar(&asJSON, "json", false, `print JSON: {"launch": ...}`)
	_ = create.MarkFlagRequired("patient")
	cmd.AddCommand(create)
	return cmd
}
