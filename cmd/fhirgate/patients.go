package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// patientJSON is the stable --json form of a directory entry.
type patientJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	BirthDate string `json:"birth_date,omitempty"`
}

func newPatientsCmd(e *env, g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "patients", Short: "The patient directory the clinician picker searches"}

	var id, name, birth string
	var asJSON bool
	add := &cobra.Command{
		Use:   "add",
		Short: "Add or replace a patient",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				p := storage.Patient{ID: id, Name: name, BirthDate: birth}
				if err := app.AddPatient(ctx, s, p); err != nil {
					return err
				}
				got, err := s.GetPatient(ctx, normalizePatientID(id))
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e.stdout, patientJSON{ID: got.ID, Name: got.Name, BirthDate: got.BirthDate})
				}
				_, err = fmt.Fprintf(e.stdout, "added Patient/%s %s\n", got.ID, got.Name)
				return err
			})
		},
	}
	add.Flags().StringVar(&id, "id", "", "FHIR id of the Patient, e.g. 123 (required)")
	add.Flags().StringVar(&name, "name", "", `display name, e.g. "Amy Shaw" (required)`)
	add.Flags().StringVar(&birth, "birth-date", "", "birth date YYYY-MM-DD")
	add.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = add.MarkFlagRequired("id")
	_ = add.MarkFlagRequired("name")

	var filter string
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List patients (optionally those whose name contains --name)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, e, g, func(ctx context.Context, _ *config.Config, s storage.Store) error {
				ps, err := s.SearchPatients(ctx, filter, 1000)
				if err != nil {
					return err
				}
				out := make([]patientJSON, 0, len(ps))
				for _, p := range ps {
					out = append(out, patientJSON{ID: p.ID, Name: p.Name, BirthDate: p.BirthDate})
				}
				if listJSON {
					return printJSON(e.stdout, out)
				}
				tw := newTable(cmd)
				fmt.Fprintln(tw, "ID\tNAME\tBIRTH DATE")
				for _, p := range out {
					fmt.Fprintf(tw, "Patient/%s\t%s\t%s\n", p.ID, p.Name, p.BirthDate)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&filter, "name", "", "name substring")
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	cmd.AddCommand(add, list)
	return cmd
}

func normalizePatientID(id string) string {
	if len(id) > len("Patient/") && id[:len("Patient/")] == "Patient/" {
		return id[len("Patient/"):]
	}
	return id
}
