package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// FamilyStore is the part of storage.Tokens FamilyRevocations needs.
type FamilyStore interface {
	GetFamily(ctx context.Context, id string) (*storage.TokenFamily, error)
	RevokeFamily(ctx context.Context, id string, now time.Time, reason string) error
}

// FamilyRevocations answers revocation from the token family records: a
// token is revoked when its family is revoked (or unknown). Answers are
// cached briefly (TTL) in a bounded map; a revocation made through Leaked
// is seen at once. It implements Revocations and Leaked.
type FamilyRevocations struct {
	store FamilyStore
	ttl   time.Duration
	max   int
	now   func() time.Time

	mu sync.RWMutex
	m  map[string]familyState
}

type familyState struct {
	revoked bool
	checked time.Time
}

// DefaultRevocationTTL is how long a family's "not revoked" answer is reused.
const DefaultRevocationTTL = 2 * time.Second

// NewFamilyRevocations returns the adapter; ttl 0 means DefaultRevocationTTL,
// max 0 means 100000 cached families.
func NewFamilyRevocations(store FamilyStore, ttl time.Duration, max int, now func() time.Time) (*FamilyRevocations, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: FamilyRevocations needs a store", ErrOptions)
	}
	if ttl <= 0 {
		ttl = DefaultRevocationTTL
	}
	if max <= 0 {
		max = 100000
	}
	if now == nil {
		now = time.Now
	}
	return &FamilyRevocations{store: store, ttl: ttl, max: max, now: now, m: map[string]familyState{}}, nil
}

// Revoked implements Revocations. Tokens without a family cannot be revoked
// by family and are reported as not revoked; an unknown family counts as
// revoked; a store failure is returned (the gateway then refuses).
func (f *FamilyRevocations) Revoked(ctx context.Context, _ string, familyID string) (bool, error) {
	if familyID == "" {
		return false, nil
	}
	now := f.now()
	f.mu.RLock()
	st, ok := f.m[familyID]
	f.mu.RUnlock()
	if ok && (st.revoked || (now.Sub(st.checked) < f.ttl && !now.Before(st.checked))) {
		return st.revoked, nil
	}
	fam, err := f.store.GetFamily(ctx, familyID)
	var revoked bool
	switch {
	case errors.Is(err, storage.ErrNotFound):
		revoked = true
	case err != nil:
		return false, fmt.Errorf("gateway: token family: %w", err)
	default:
		revoked = !fam.RevokedAt.IsZero()
	}
	f.set(familyID, familyState{revoked: revoked, checked: now})
	return revoked, nil
}

func (f *FamilyRevocations) set(id string, st familyState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m) >= f.max {
		now := f.now()
		for k, v := range f.m {
			if !v.revoked && now.Sub(v.checked) >= f.ttl {
				delete(f.m, k)
			}
		}
		for k := range f.m {
			if len(f.m) < f.max {
				break
			}
			delete(f.m, k) // a dropped entry is simply read from the store again
		}
	}
	f.m[id] = st
}

// Leaked implements Leaked: it revokes the token's family.
func (f *FamilyRevocations) Leaked(ctx context.Context, c *token.AccessClaims) error {
	if c == nil || c.FamilyID == "" {
		return errors.New("gateway: leaked token has no family to revoke")
	}
	if err := f.store.RevokeFamily(ctx, c.FamilyID, f.now(), "access token leaked in a URL or form body"); err != nil {
		return fmt.Errorf("gateway: revoke leaked token family: %w", err)
	}
	f.set(c.FamilyID, familyState{revoked: true, checked: f.now()})
	return nil
}
