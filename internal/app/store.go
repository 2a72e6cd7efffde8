package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/postgres"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

// OpenStore opens the configured backend: SQLite at {data_dir}/fhirgate.db
// (created with its directory if missing) or PostgreSQL at storage.dsn.
// Schema migrations run on open.
func OpenStore(ctx context.Context, cfg *config.Config) (storage.Store, error) {
	switch cfg.Storage.Driver {
	case "postgres":
		s, err := postgres.Open(ctx, cfg.Storage.DSN)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		return s, nil
	default:
		s, err := sqlite.Open(ctx, cfg.SQLitePath())
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", cfg.SQLitePath(), err)
		}
		return s, nil
	}
}

// KEK returns the configured key-encryption key, or the development KEK when
// keys.kek is empty (keys.New then logs a loud warning). Validate already
// refused an empty KEK with a non-loopback issuer.
func KEK(cfg *config.Config) ([]byte, error) {
	if cfg.Keys.KEK == "" {
		return keys.DevKEK(), nil
	}
	k, err := keys.ParseKEK(cfg.Keys.KEK)
	if err != nil {
		return nil, fmt.Errorf("keys.kek: %w", err)
	}
	return k, nil
}

// OpenKeys loads (generating on first use) the signing keys.
func OpenKeys(ctx context.Context, cfg *config.Config, store storage.Keys, logger *slog.Logger, auditor audit.Auditor, now func() time.Time) (*keys.Manager, error) {
	kek, err := KEK(cfg)
	if err != nil {
		return nil, err
	}
	m, err := keys.New(ctx, keys.Options{Store: store, KEK: kek, Now: now, Logger: logger, Auditor: auditor,
		RotationPeriod: cfg.Keys.RotationPeriod, Prepublish: cfg.Keys.Prepublish})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return m, nil
}
