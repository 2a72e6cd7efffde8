package app

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/config"
)

// TestNewReturnsErrorWhenTheStoreCannotOpen: a failing New returns its
// error (no panic in its cleanup) and releases the listener it bound.
func TestNewReturnsErrorWhenTheStoreCannotOpen(t *testing.T) {
	dir := t.TempDir()
	// A directory where the SQLite file should be: the store cannot open.
	if err := os.Mkdir(filepath.Join(dir, "fhirgate.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, err := config.Load(config.LoadOptions{LookupEnv: func(string) (string, bool) { return "", false },
		Overrides: map[string]string{"addr": addr, "data_dir": dir}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || a != nil {
		t.Fatalf("New = %v, %v; want an error", a, err)
	}
	// The listener New bound was closed: the address can be bound again.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listener not released: %v", err)
	}
	ln2.Close()
}
