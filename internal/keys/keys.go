// Package keys manages fhirgate's JWT signing keys: generation on first
// start, encryption of the private parts at rest under a key-encryption key
// (AES-256-GCM), rotation, the public JWK Set, and JWT signing and
// verification with an explicit algorithm allowlist.
//
// Two algorithms are kept, each with one active key: ES256 (P-256), used for
// access tokens, and RS256 (RSA-2048), the OpenID Connect default for
// id_tokens. Rotation adds a new active key per algorithm; retired keys keep
// verifying, and stay in the JWK Set, for RetiredKeyTTL after retirement.
package keys

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Supported algorithms.
const (
	ES256 = string(jose.ES256)
	RS256 = string(jose.RS256)
)

// Algs lists the algorithms the manager keeps a key for.
var algs = []string{ES256, RS256}

// DefaultRetiredKeyTTL is how long a retired key keeps verifying and stays
// published. It must outlast every token signed with it (access tokens live
// at most 60 minutes) plus the time clients cache the JWK Set.
const DefaultRetiredKeyTTL = 24 * time.Hour

// minRetiredKeyTTL is the shortest RetiredKeyTTL accepted: the longest access
// token lifetime plus clock skew.
const minRetiredKeyTTL = 61 * time.Minute

// Errors.
var (
	// ErrUnsupportedAlg: an algorithm other than ES256 or RS256 was asked for.
	ErrUnsupportedAlg = errors.New("keys: unsupported algorithm")
	// ErrNoActiveKey: no active key for the algorithm (the store was emptied).
	ErrNoActiveKey = errors.New("keys: no active signing key")
	// ErrInvalidJWT: a JWT failed verification. Every Verify error wraps it.
	ErrInvalidJWT = errors.New("keys: invalid JWT")
	// ErrUnknownKID: the JWT names a key we do not have (or that expired).
	// It wraps ErrInvalidJWT.
	ErrUnknownKID = fmt.Errorf("%w: unknown key id", ErrInvalidJWT)
)

// Options configures a Manager.
type Options struct {
	Store storage.Keys
	// KEK is the 32-byte key-encryption key sealing private keys at rest.
	KEK    []byte
	Now    func() time.Time
	Logger *slog.Logger
	// RetiredKeyTTL is how long a retired key keeps verifying; default
	// DefaultRetiredKeyTTL, at least 61 minutes.
	RetiredKeyTTL time.Duration
	// Auditor, if set, records key rotations.
	Auditor audit.Auditor
	// RotationPeriod is how long a key signs before a scheduled rotation
	// replaces it (see Schedule); zero turns scheduled rotation off.
	RotationPeriod time.Duration
	// Prepublish is how long before it starts signing the next key is
	// published in the JWK Set; default DefaultPrepublish, capped at half
	// of RotationPeriod.
	Prepublish time.Duration
}

// Manager holds the signing keys in memory. It is safe for concurrent use.
type Manager struct {
	store      storage.Keys
	kek        []byte
	now        func() time.Time
	log        *slog.Logger
	retiredTTL time.Duration
	auditor    audit.Auditor
	period     time.Duration // scheduled rotation; 0 = off
	prepublish time.Duration

	reloadMu sync.Mutex // serialises Reload and Rotate
	state    atomic.Pointer[state]
}

// loadedKey is one decrypted key. It is immutable once built, except for the
// signer cache.
type loadedKey struct {
	rec     storage.SigningKey // EncryptedPrivate kept only to detect changes
	alg     jose.SignatureAlgorithm
	priv    crypto.Signer
	pub     crypto.PublicKey
	jwk     jose.JSONWebKey // public
	signers sync.Map        // typ -> jose.Signer
}

// state is an immutable snapshot of the keys.
type state struct {
	byKID  map[string]*loadedKey
	active map[string]*loadedKey // by alg
	order  []*loadedKey          // store order, oldest first
}

// New loads the keys from the store. On first start (no active key for an
// algorithm) it generates one ES256 and one RS256 key, seals their private
// parts under KEK and activates them. A wrong KEK is an error (ErrDecrypt).
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("keys: Options.Store is required")
	}
	if len(opts.KEK) != KEKSize {
		return nil, ErrBadKEK
	}
	m := &Manager{
		store:      opts.Store,
		kek:        bytes.Clone(opts.KEK),
		now:        opts.Now,
		log:        opts.Logger,
		retiredTTL: opts.RetiredKeyTTL,
		auditor:    opts.Auditor,
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case m.retiredTTL == 0:
		m.retiredTTL = DefaultRetiredKeyTTL
	case m.retiredTTL < minRetiredKeyTTL:
		return nil, fmt.Errorf("keys: RetiredKeyTTL %s is shorter than the longest token lifetime (%s)", m.retiredTTL, minRetiredKeyTTL)
	}
	if err := m.setSchedule(opts.RotationPeriod, opts.Prepublish); err != nil {
		return nil, err
	}
	if IsDevKEK(m.kek) {
		m.log.Warn("SIGNING KEYS ARE ENCRYPTED WITH THE PUBLIC DEVELOPMENT KEY-ENCRYPTION KEY: anyone with the database can read them. Set a real key-encryption key before production use.")
	}

	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if err := m.reloadLocked(ctx); err != nil {
		return nil, err
	}
	st := m.state.Load()
	var created []string
	for _, alg := range algs {
		if st.active[alg] != nil {
			continue
		}
		kid, err := m.addKey(ctx, alg)
		if err != nil {
			return nil, err
		}
		created = append(created, kid)
	}
	if len(created) > 0 {
		m.log.Info("generated signing keys", slog.Any("kids", created))
		if err := m.reloadLocked(ctx); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Rotate creates and activates a new key per algorithm and returns the new
// kids. The previously active keys are retired: they keep verifying, and stay
// in the JWK Set, for RetiredKeyTTL.
func (m *Manager) Rotate(ctx context.Context) ([]string, error) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	var kids []string
	for _, alg := range algs {
		kid, err := m.addKey(ctx, alg)
		if err != nil {
			return kids, err
		}
		kids = append(kids, kid)
	}
	if err := m.reloadLocked(ctx); err != nil {
		return kids, err
	}
	m.log.Info("rotated signing keys", slog.Any("kids", kids))
	if m.auditor != nil {
		for _, kid := range kids {
			ev := audit.Event{Time: m.now(), Action: audit.ActionKeyRotated, Outcome: audit.Success, TokenID: kid}
			if err := m.auditor.Record(ctx, ev); err != nil {
				return kids, fmt.Errorf("keys: audit key rotation: %w", err)
			}
		}
	}
	return kids, nil
}

// addKey generates, stores and activates a key for alg.
func (m *Manager) addKey(ctx context.Context, alg string) (string, error) {
	return m.createKey(ctx, alg, true)
}

// Reload re-reads the store, picking up keys another process created or
// activated (for example `fhirgate keys rotate` while the server runs).
func (m *Manager) Reload(ctx context.Context) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	return m.reloadLocked(ctx)
}

// Watch calls Reload every interval until ctx ends, logging failures (the
// previous keys stay in use when a reload fails).
func (m *Manager) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Reload(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("reload signing keys", slog.Any("error", err))
			}
		}
	}
}

func (m *Manager) reloadLocked(ctx context.Context) error {
	recs, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	prev := m.state.Load()
	st := &state{
		byKID:  make(map[string]*loadedKey, len(recs)),
		active: make(map[string]*loadedKey, len(algs)),
	}
	for _, rec := range recs {
		var lk *loadedKey
		if prev != nil {
			if old := prev.byKID[rec.KID]; old != nil && old.rec.Alg == rec.Alg && bytes.Equal(old.rec.EncryptedPrivate, rec.EncryptedPrivate) {
				// Same key material: reuse the decrypted key and its signer
				// cache, with the fresh record (Active/RetiredAt may differ).
				lk = &loadedKey{rec: rec, alg: old.alg, priv: old.priv, pub: old.pub, jwk: old.jwk}
				old.signers.Range(func(k, v any) bool { lk.signers.Store(k, v); return true })
			}
		}
		if lk == nil {
			lk, err = m.load(rec)
			if err != nil {
				return err
			}
		}
		st.byKID[rec.KID] = lk
		st.order = append(st.order, lk)
		if rec.Active {
			if cur := st.active[rec.Alg]; cur == nil || rec.CreatedAt.After(cur.rec.CreatedAt) {
				st.active[rec.Alg] = lk
			}
		}
	}
	m.state.Store(st)
	return nil
}

// load decrypts one record and checks it against its public JWK.
func (m *Manager) load(rec storage.SigningKey) (*loadedKey, error) {
	if rec.Alg != ES256 && rec.Alg != RS256 {
		return nil, fmt.Errorf("%w: kid %s has alg %q", ErrUnsupportedAlg, rec.KID, rec.Alg)
	}
	priv, err := open(m.kek, rec.KID, rec.Alg, rec.EncryptedPrivate)
	if err != nil {
		return nil, err
	}
	jwk, err := publicJWK(rec.Alg, priv)
	if err != nil {
		return nil, err
	}
	if jwk.KeyID != rec.KID {
		return nil, fmt.Errorf("%w: kid %s does not match its private key", ErrDecrypt, rec.KID)
	}
	return &loadedKey{
		rec:  rec,
		alg:  jose.SignatureAlgorithm(rec.Alg),
		priv: priv,
		pub:  priv.Public(),
		jwk:  jwk,
	}, nil
}

// usable reports whether k may verify tokens at now: active, not yet
// activated, or retired less than RetiredKeyTTL ago.
func (m *Manager) usable(k *loadedKey, now time.Time) bool {
	return k.rec.Active || k.rec.RetiredAt.IsZero() || now.Before(k.rec.RetiredAt.Add(m.retiredTTL))
}

// JWKS returns the public keys that verify tokens: every active key and every
// retired key that has not yet expired.
func (m *Manager) JWKS() jose.JSONWebKeySet {
	st := m.state.Load()
	now := m.now()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(st.order))}
	for _, k := range st.order {
		if m.usable(k, now) {
			set.Keys = append(set.Keys, k.jwk)
		}
	}
	return set
}

// Keys returns the key records (without their sealed private parts), oldest
// first, for `fhirgate keys list`.
func (m *Manager) Keys() []storage.SigningKey {
	st := m.state.Load()
	out := make([]storage.SigningKey, 0, len(st.order))
	for _, k := range st.order {
		r := k.rec
		r.EncryptedPrivate = nil
		r.PublicJWK = bytes.Clone(r.PublicJWK)
		out = append(out, r)
	}
	return out
}

// ActiveKID returns the kid new tokens of alg are signed with.
func (m *Manager) ActiveKID(alg string) (string, error) {
	k := m.state.Load().active[alg]
	if k == nil {
		return "", fmt.Errorf("%w for %s", ErrNoActiveKey, alg)
	}
	return k.rec.KID, nil
}
