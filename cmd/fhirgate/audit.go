package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/export"
	"github.com/fhirgate/fhirgate/internal/auditapi"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func newAuditCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Audit trail: verify the hash chains, export events"}
	cmd.AddCommand(newAuditVerifyCmd(e, g), newAuditExportCmd(e, g))
	return cmd
}

func newAuditVerifyCmd(e *env, g *globalFlags) *cobra.Command {
	var skipSignatures bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Re-walk every node's audit hash chain and check the signed checkpoints; exit 1 naming the first altered, removed or reordered record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, cfg *config.Config, s storage.Store) error {
				var km *keys.Manager
				if !skipSignatures {
					var err error
					if km, err = openKeys(ctx, e, cfg, s); err != nil {
						return err
					}
				}
				rep, err := app.VerifyAudit(ctx, cfg, km, e.stdout)
				if err != nil {
					return err
				}
				if !rep.OK() {
					for _, p := range rep.Problems() {
						fmt.Fprintln(e.stderr, "fhirgate: audit chain broken:", p.String())
					}
					return errSilent
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&skipSignatures, "skip-signatures", false, "check hashes only, not checkpoint signatures")
	return cmd
}

func newAuditExportCmd(e *env, g *globalFlags) *cobra.Command {
	var since, until, patient, user, client, format, out string
	var actions []string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write audit events as FHIR R4 AuditEvent (IHE BALP) NDJSON, a FHIR Bundle, or plain JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(e, g, nil)
			if err != nil {
				return err
			}
			q := map[string][]string{"since": {since}, "until": {until}, "patient": {patient}, "user": {user}, "client": {client}, "action": actions}
			f, err := auditapi.ParseFilter(q)
			if err != nil {
				return err
			}
			fm, err := export.ParseFormat(format)
			if err != nil {
				return err
			}
			w := e.stdout
			if out != "" {
				file, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer file.Close()
				w = file
			}
			now := time.Now
			if e.now != nil {
				now = e.now
			}
			n, err := app.ExportAudit(cmd.Context(), cfg, w, f, fm, now())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "fhirgate: exported %d audit events\n", n)
			// Exporting the trail is itself an audited act (in the operational log).
			newLogger(e.stderr, cfg.Log.Level).Info("audit export", "action", string(audit.ActionAuditExport),
				"events", n, "format", format, "filter", fmt.Sprintf("%+v", chain.Filter{Patient: f.Patient, User: f.User, Client: f.Client, Actions: f.Actions, Since: f.Since, Until: f.Until}))
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "first time (RFC 3339 or YYYY-MM-DD)")
	cmd.Flags().StringVar(&until, "until", "", "end time, exclusive (RFC 3339 or YYYY-MM-DD)")
	cmd.Flags().StringVar(&patient, "patient", "", "only events touching this patient id")
	cmd.Flags().StringVar(&user, "user", "", "only events of this user (sub or fhirUser)")
	cmd.Flags().StringVar(&client, "client", "", "only events of this client_id")
	cmd.Flags().StringSliceVar(&actions, "action", nil, "only these actions (repeat or comma-separate)")
	cmd.Flags().StringVar(&format, "format", "fhir", "fhir (AuditEvent NDJSON), fhir-bundle or json")
	cmd.Flags().StringVar(&out, "out", "", "write to this file (mode 0600) instead of stdout")
	return cmd
}
