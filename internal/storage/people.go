package storage

import (
	"context"
	"time"
)

// MFACredential is a user's TOTP (RFC 6238) enrolment.
type MFACredential struct {
	UserID string
	// SealedSecret is the TOTP key encrypted with the key-encryption key
	// (package mfa seals and opens it); never stored in clear.
	SealedSecret []byte
	Confirmed    bool // enrolment finished: a first code was verified
	// Provisioned marks a key an administrator created and handed over out
	// of band (login.mfa_enrolment: provisioned), not one shown on a page.
	Provisioned bool
	LastStep    int64 // the last accepted TOTP time step (replay protection)
	// RecoveryHashes are SHA-256 hashes (HashSecret) of the unused recovery codes.
	RecoveryHashes [][]byte
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// MFA stores TOTP enrolments and recovery codes.
type MFA interface {
	// GetMFA returns userID's credential, ErrNotFound if none.
	GetMFA(ctx context.Context, userID string) (*MFACredential, error)
	// PutMFA inserts or replaces userID's credential and its recovery codes.
	PutMFA(ctx context.Context, c *MFACredential) error
	// UseTOTPStep records step as used if it is later than LastStep, in one
	// statement: ErrAlreadyUsed if step <= LastStep (a replayed or older
	// code), ErrNotFound without a confirmed credential. Exactly one
	// concurrent caller with the same step succeeds.
	UseTOTPStep(ctx context.Context, userID string, step int64, now time.Time) error
	// UseRecoveryCode deletes one unused recovery code by its hash:
	// ErrNotFound if it is not (or no longer) there. Single use under
	// concurrency.
	UseRecoveryCode(ctx context.Context, userID string, hash []byte, now time.Time) error
	// DeleteMFA removes the credential and its recovery codes; deleting a
	// missing one is not an error.
	DeleteMFA(ctx context.Context, userID string) error
}

// AppAccess is one app's standing access for a user: a remembered consent
// and/or token families.
type AppAccess struct {
	ClientID     string
	Scope        string    // the consent's scopes, else the newest live family's
	ConsentedAt  time.Time // consent UpdatedAt; zero without a remembered consent
	LiveFamilies int       // unrevoked, unexpired token families
	LastIssued   time.Time // newest family or refresh token created for the app
}

// AppAccesses lists the apps a user has let in.
type AppAccesses interface {
	// ListAppAccess returns, per client, userID's consent and live token
	// families at now, for every client with either; ordered by client id.
	ListAppAccess(ctx context.Context, userID string, now time.Time) ([]AppAccess, error)
}
