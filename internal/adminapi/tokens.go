// Package adminapi is the admin listener's HTTP API: a mux of its own,
// served on a separate address, where every route requires an admin token
// (made by `fhirgate admin token`, stored only as a SHA-256 hash) or a
// client certificate the listener verified (mTLS). It serves Prometheus
// /metrics and the anomaly list/clear API, and other features mount their
// admin routes on it with Handle.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// TokenPrefix starts every admin token, so a leaked one is recognisable
// (and secret scanners can find it).
const TokenPrefix = "fgadm_"

// Token is a stored admin token: never the token itself, only its hash.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Hash      []byte    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt ends the token; zero means it does not expire.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Valid reports whether t can be used at now.
func (t Token) Valid(now time.Time) bool { return t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt) }

// TokenStore keeps admin tokens.
type TokenStore interface {
	AddToken(ctx context.Context, t Token) error
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken deletes the token id (ErrTokenNotFound if unknown).
	RevokeToken(ctx context.Context, id string) error
}

// Errors.
var (
	ErrTokenNotFound = errors.New("adminapi: admin token not found")
	ErrInvalidToken  = errors.New("adminapi: invalid admin token")
	ErrOptions       = errors.New("adminapi: invalid options")
)

// NewToken makes an admin token named name, valid for ttl (0: no expiry).
// It returns the token text, to show once, and the record to store.
func NewToken(name string, ttl time.Duration, now time.Time) (string, Token, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", Token{}, fmt.Errorf("%w: name must be 1-100 characters", ErrOptions)
	}
	if ttl < 0 {
		return "", Token{}, fmt.Errorf("%w: ttl must not be negative", ErrOptions)
	}
	text := TokenPrefix + secret.Token()
	t := Token{ID: secret.ID(), Name: name, Hash: storage.HashSecret(text), CreatedAt: now.UTC()}
	if ttl > 0 {
		t.ExpiresAt = t.CreatedAt.Add(ttl)
	}
	return text, t, nil
}

// Authenticate finds the valid token whose hash matches text, comparing
// every stored hash in constant time.
func Authenticate(ctx context.Context, store TokenStore, text string, now time.Time) (*Token, error) {
	if store == nil || !strings.HasPrefix(text, TokenPrefix) {
		return nil, ErrInvalidToken
	}
	ts, err := store.ListTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("adminapi: list tokens: %w", err)
	}
	h := storage.HashSecret(text)
	var found *Token
	for i := range ts {
		if secret.Equal(ts[i].Hash, h) && found == nil {
			found = &ts[i]
		}
	}
	if found == nil || !found.Valid(now) {
		return nil, ErrInvalidToken
	}
	return found, nil
}

// FileTokens is a TokenStore in a JSON file (mode 0600) that the CLI writes
// and the server re-reads when it changes, so a token made by
// `fhirgate admin token` works without a restart.
type FileTokens struct {
	path string
	mu   sync.Mutex
	mod  time.Time
	size int64
	ts   []Token
}

// NewFileTokens uses the file at path (created on first AddToken).
func NewFileTokens(path string) *FileTokens { return &FileTokens{path: path} }

// Path returns the file's path.
func (f *FileTokens) Path() string { return f.path }

func (f *FileTokens) load() ([]Token, error) {
	st, err := os.Stat(f.path)
	if errors.Is(err, os.ErrNotExist) {
		f.ts, f.mod, f.size = nil, time.Time{}, 0
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.ModTime().Equal(f.mod) && st.Size() == f.size && f.ts != nil {
		return f.ts, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	var ts []Token
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("admin token file %s: %w", f.path, err)
	}
	if ts == nil {
		ts = []Token{}
	}
	f.ts, f.mod, f.size = ts, st.ModTime(), st.Size()
	return ts, nil
}

func (f *FileTokens) save(ts []Token) error {
	b, err := json.MarshalIndent(ts, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".admin-tokens-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	f.ts = nil // force a re-read (mtime granularity)
	return nil
}

// AddToken implements TokenStore.
func (f *FileTokens) AddToken(_ context.Context, t Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts, err := f.load()
	if err != nil {
		return err
	}
	return f.save(append(append([]Token(nil), ts...), t))
}

// ListTokens implements TokenStore.
func (f *FileTokens) ListTokens(_ context.Context) ([]Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts, err := f.load()
	return append([]Token(nil), ts...), err
}

// RevokeToken implements TokenStore.
func (f *FileTokens) RevokeToken(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts, err := f.load()
	if err != nil {
		return err
	}
	out := make([]Token, 0, len(ts))
	for _, t := range ts {
		if t.ID != id {
			out = append(out, t)
		}
	}
	if len(out) == len(ts) {
		return fmt.Errorf("%w: %q", ErrTokenNotFound, id)
	}
	return f.save(out)
}

// MemoryTokens is an in-process TokenStore (tests).
type MemoryTokens struct {
	mu sync.Mutex
	ts []Token
}

// AddToken implements TokenStore.
func (m *MemoryTokens) AddToken(_ context.Context, t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ts = append(m.ts, t)
	return nil
}

// ListTokens implements TokenStore.
func (m *MemoryTokens) ListTokens(context.Context) ([]Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Token(nil), m.ts...), nil
}

// RevokeToken implements TokenStore.
func (m *MemoryTokens) RevokeToken(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, t := range m.ts {
		if t.ID == id {
			m.ts = append(m.ts[:i], m.ts[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrTokenNotFound, id)
}
