package main

import (
	"context"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// withStore loads the configuration, opens the store, runs fn and closes it.
// SQLite in WAL mode lets these commands run while serve uses the same file.
func withStore(cmd *cobra.Command, e *env, g *globalFlags, fn func(ctx context.Context, cfg *config.Config, s storage.Store) error) error {
	cfg, err := loadConfig(e, g, nil)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	s, err := app.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(ctx, cfg, s)
}

func newTable(cmd *cobra.Command) *tabwriter.Writer {
	return tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
}

// timeOrEmpty formats t as RFC 3339 UTC, or "" for the zero time.
func timeOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
