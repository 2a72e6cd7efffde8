// Package sqlitefile prepares the SQLite database files that the adapters
// open (the main store, the audit sink, the anomaly store): the directory
// and the file with owner-only permissions, and the file: URI that
// modernc.org/sqlite expects. Its Checkpointer keeps a busy writer's
// write-ahead log from growing without end while checkpoints stay out of
// its commits.
package sqlitefile

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// Create makes the directory of path (0700) and the file itself (0600) if
// they are missing, and returns the file's absolute path.
func Create(path string) (string, error) {
	if path == "" {
		return "", errors.New("empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("database path %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return "", fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("create database file: %w", err)
	}
	return abs, nil
}

// URI returns the file: URI of the absolute path abs, with query (the
// driver's parameters, without "?") when it is not empty.
func URI(abs, query string) string {
	u := "file:" + (&url.URL{Path: abs}).EscapedPath()
	if query != "" {
		u += "?" + query
	}
	return u
}
