package storage

import (
	"context"
	"time"
)

// RevokedKind says what a revocation list entry names.
type RevokedKind string

// Revocation list entry kinds.
const (
	RevokedAccessToken RevokedKind = "jti"    // one access token, by jti
	RevokedFamily      RevokedKind = "family" // every token of a family
)

// FamilyRevocationTTL is how long a revoked family stays on the revocation
// list (RevokedSince): longer than any access token of the family can live
// after its revocation (the access-token lifetime is at most one hour, plus
// clock skew and a refresh racing the revocation).
const FamilyRevocationTTL = 2 * time.Hour

// RevokedToken is one revocation list entry, kept until ExpiresAt (the
// natural expiry of the last token it names).
type RevokedToken struct {
	Kind      RevokedKind
	ID        string
	RevokedAt time.Time
	ExpiresAt time.Time
}

// RevocationList is the list of revoked JWT access tokens and token families
// that resource servers (the gateway) consult.
type RevocationList interface {
	// RevokeAccessToken lists jti as revoked until expiresAt.
	RevokeAccessToken(ctx context.Context, jti string, expiresAt, now time.Time) error
	// IsRevoked reports whether the access token jti, or its family, is
	// revoked. Empty arguments match nothing; an unknown family is not
	// revoked here (callers that need the family to exist check GetFamily).
	IsRevoked(ctx context.Context, jti, familyID string, now time.Time) (bool, error)
	// RevokedSince returns the entries (access tokens and families) revoked at
	// or after since that have not expired at now, for incremental polling.
	// Revoked families are listed until RevokedAt+FamilyRevocationTTL.
	RevokedSince(ctx context.Context, since, now time.Time) ([]RevokedToken, error)
}

// Replays remembers one-time values (client assertion jti, DPoP proof jti,
// PAR request uris) until they expire.
type Replays interface {
	// UseOnce records key until expiresAt. It returns ErrAlreadyUsed when key
	// is recorded and has not expired at now. Exactly one concurrent caller
	// succeeds. Expired keys may be purged.
	UseOnce(ctx context.Context, key string, expiresAt, now time.Time) error
}
