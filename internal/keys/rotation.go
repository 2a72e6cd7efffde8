package keys

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Scheduled rotation defaults and limits.
const (
	// DefaultPrepublish is how long the next key is published before it signs.
	DefaultPrepublish = 24 * time.Hour
	// MinRotationPeriod is the shortest RotationPeriod accepted.
	MinRotationPeriod = 2 * time.Hour
	// minPrepublish leaves relying parties time to refresh a cached JWK Set.
	minPrepublish = 10 * time.Minute
)

// setSchedule validates and stores the rotation schedule.
func (m *Manager) setSchedule(period, prepublish time.Duration) error {
	if period == 0 {
		return nil
	}
	if period < MinRotationPeriod {
		return fmt.Errorf("keys: RotationPeriod %s is shorter than %s", period, MinRotationPeriod)
	}
	if prepublish == 0 {
		prepublish = min(DefaultPrepublish, period/2)
	}
	if prepublish < minPrepublish || prepublish > period/2 {
		return fmt.Errorf("keys: Prepublish %s must be between %s and half the rotation period (%s)", prepublish, minPrepublish, period/2)
	}
	m.period, m.prepublish = period, prepublish
	return nil
}

// activatedAt estimates when the active key k of alg started signing: when
// the key it replaced was retired, or its creation for the first key.
func activatedAt(st *state, k *loadedKey) time.Time {
	at := k.rec.CreatedAt
	for _, o := range st.order {
		if o.rec.Alg == k.rec.Alg && o != k && !o.rec.RetiredAt.IsZero() && o.rec.RetiredAt.After(at) {
			at = o.rec.RetiredAt
		}
	}
	return at
}

// pending returns the newest published, never activated key of alg.
func pending(st *state, alg string) *loadedKey {
	var p *loadedKey
	for _, k := range st.order {
		if k.rec.Alg == alg && !k.rec.Active && k.rec.RetiredAt.IsZero() {
			if p == nil || k.rec.CreatedAt.After(p.rec.CreatedAt) {
				p = k
			}
		}
	}
	return p
}

// RotateIfDue runs one step of the rotation schedule for each algorithm:
// Prepublish before the active key has signed for RotationPeriod, the next
// key is created and published (inactive); once the period is over and the
// next key has been published for Prepublish, it is activated and the old
// key retired (it keeps verifying for RetiredKeyTTL, longer than any token
// it signed lives). It reports what changed. Without a schedule it does
// nothing.
func (m *Manager) RotateIfDue(ctx context.Context) (published, activated []string, err error) {
	if m.period == 0 {
		return nil, nil, nil
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if err := m.reloadLocked(ctx); err != nil {
		return nil, nil, err
	}
	now := m.now()
	st := m.state.Load()
	for _, alg := range algs {
		active := st.active[alg]
		if active == nil {
			continue
		}
		due := activatedAt(st, active).Add(m.period)
		next := pending(st, alg)
		switch {
		case next == nil && !now.Before(due.Add(-m.prepublish)):
			kid, err := m.createKey(ctx, alg, false)
			if err != nil {
				return published, activated, err
			}
			published = append(published, kid)
		case next != nil && !now.Before(due) && !now.Before(next.rec.CreatedAt.Add(m.prepublish)):
			if err := m.store.ActivateSigningKey(ctx, next.rec.KID, now); err != nil {
				return published, activated, fmt.Errorf("keys: activate %s key: %w", alg, err)
			}
			activated = append(activated, next.rec.KID)
		}
	}
	if len(published)+len(activated) == 0 {
		return nil, nil, nil
	}
	if err := m.reloadLocked(ctx); err != nil {
		return published, activated, err
	}
	if len(published) > 0 {
		m.log.Info("published next signing keys", slog.Any("kids", published))
	}
	if len(activated) > 0 {
		m.log.Info("scheduled signing key rotation", slog.Any("kids", activated))
		if m.auditor != nil {
			for _, kid := range activated {
				ev := audit.Event{Time: now, Action: audit.ActionKeyRotated, Outcome: audit.Success, TokenID: kid, Reason: "scheduled"}
				if err := m.auditor.Record(ctx, ev); err != nil {
					return published, activated, fmt.Errorf("keys: audit key rotation: %w", err)
				}
			}
		}
	}
	return published, activated, nil
}

// Schedule runs RotateIfDue every interval until ctx ends (and reloads the
// keys each time, so it replaces Watch), logging failures. With no
// RotationPeriod it only reloads.
func (m *Manager) Schedule(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			var err error
			if m.period == 0 {
				err = m.Reload(ctx)
			} else {
				_, _, err = m.RotateIfDue(ctx)
			}
			if err != nil && ctx.Err() == nil {
				m.log.Error("signing key schedule", slog.Any("error", err))
			}
		}
	}
}

// createKey generates and stores a key for alg, activating it when activate.
func (m *Manager) createKey(ctx context.Context, alg string, activate bool) (string, error) {
	priv, err := generate(alg)
	if err != nil {
		return "", err
	}
	jwk, err := publicJWK(alg, priv)
	if err != nil {
		return "", err
	}
	pubJSON, err := jwk.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("keys: encode public key: %w", err)
	}
	sealed, err := seal(m.kek, jwk.KeyID, priv)
	if err != nil {
		return "", err
	}
	now := m.now()
	rec := &storage.SigningKey{KID: jwk.KeyID, Alg: alg, PublicJWK: pubJSON, EncryptedPrivate: sealed, CreatedAt: now}
	if err := m.store.CreateSigningKey(ctx, rec); err != nil {
		return "", fmt.Errorf("keys: store %s key: %w", alg, err)
	}
	if activate {
		if err := m.store.ActivateSigningKey(ctx, jwk.KeyID, now); err != nil {
			return "", fmt.Errorf("keys: activate %s key: %w", alg, err)
		}
	}
	return jwk.KeyID, nil
}
