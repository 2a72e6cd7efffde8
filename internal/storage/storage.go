// Package storage defines fhirgate's persistent records, the small store
// interfaces features depend on, and the sentinel errors every backend
// returns. Backends live in sqlite/ and postgres/; storagetest/ is the
// conformance suite both must pass.
//
// Secrets never reach a store in clear: codes, refresh tokens, launch values,
// session ids, client secrets and registration tokens are stored as SHA-256
// hashes (see HashSecret), passwords as argon2id hashes, and signing keys
// encrypted with a key-encryption key.
package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
)

// Sentinel errors. Backends wrap them with context; callers test with errors.Is.
var (
	// ErrNotFound: no record with that key.
	ErrNotFound = errors.New("storage: not found")
	// ErrConflict: a record with that unique key already exists.
	ErrConflict = errors.New("storage: already exists")
	// ErrAlreadyUsed: a single-use value was presented a second time.
	ErrAlreadyUsed = errors.New("storage: already used")
	// ErrExpired: the record exists but its lifetime has passed.
	ErrExpired = errors.New("storage: expired")
	// ErrRevoked: the record, or its token family, was revoked.
	ErrRevoked = errors.New("storage: revoked")
)

// HashSecret returns the SHA-256 digest under which a high-entropy secret
// (code, refresh token, launch value, session id, client secret, registration
// token) is stored and looked up.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// RefreshTokenKey returns the key a refresh token is stored and looked up
// under. For a token from secret.TimedToken it is the 16 bytes of its
// time-ordered prefix followed by the SHA-256 hash of the whole token:
// tokens issued one after another then sit next to each other in the
// store's index, so a batch of rotations writes few index pages, where the
// bare hash put each new token on a random page. Any other token (those
// issued before TimedToken existed) is stored under HashSecret. Either way
// the key holds the token's hash, never the token: the prefix is public
// (when the token was issued) and cannot stand in for the secret part.
func RefreshTokenKey(token string) []byte {
	prefix, ok := secret.TimedPrefix(token)
	if !ok {
		return HashSecret(token)
	}
	h := sha256.Sum256([]byte(token))
	return append(prefix, h[:]...)
}

// Role is a user's role; it bounds which scopes the user may grant.
type Role string

// Roles.
const (
	RolePatient   Role = "patient"
	RoleClinician Role = "clinician"
	RoleAdmin     Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	return r == RolePatient || r == RoleClinician || r == RoleAdmin
}

// User is a local account.
type User struct {
	ID           string // opaque, stable; the OIDC sub
	Username     string // unique
	PasswordHash string // argon2id PHC string
	Role         Role
	FHIRUser     string // relative reference, e.g. Patient/123 or Practitioner/9
	CreatedAt    time.Time
	FailedLogins int       // consecutive failures since the last success
	LockedUntil  time.Time // zero when not locked
}

// Client is a registered OAuth client.
type Client struct {
	ID                       string
	Name                     string
	SecretHash               []byte // SHA-256 of the secret; nil unless AuthMethod uses a secret
	AuthMethod               string // oauth.AuthMethod value; exactly one per client
	RedirectURIs             []string
	Scope                    string   // space-separated scopes the client may ever be granted
	GrantTypes               []string // oauth.GrantType values
	LaunchURI                string   // optional EHR launch URL
	LogoURI                  string
	IDTokenSignedResponseAlg string // "RS256" (default) or "ES256"
	JWKS                     []byte // registered JWK Set JSON, for private_key_jwt
	JWKSURI                  string
	RegistrationTokenHash    []byte // RFC 7592 registration access token hash; nil for CLI-made clients
	DPoPBoundAccessTokens    bool   // RFC 9449 §5.2: the client never gets an unbound access token
	RequirePAR               bool   // RFC 9126 §6: /authorize only with a pushed request_uri
	TLSClientAuthSubjectDN   string // RFC 8705 §2.1.2, for tls_client_auth
	Disabled                 bool
	CreatedAt                time.Time
	UpdatedAt                time.Time
}

// LaunchContext is the SMART launch context bound to a grant.
type LaunchContext struct {
	Patient           string `json:"patient,omitempty"`     // bare id, e.g. "123"
	Encounter         string `json:"encounter,omitempty"`   // bare id
	FHIRContext       []byte `json:"fhirContext,omitempty"` // JSON array of fhirContext objects, or nil
	NeedPatientBanner bool   `json:"need_patient_banner"`
	Intent            string `json:"intent,omitempty"`
}

// Launch is an EHR launch value waiting for /authorize. The value itself is
// returned once to the caller; only its hash is stored.
type Launch struct {
	Hash      []byte
	Context   LaunchContext
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero until consumed
}

// AuthRequest is an /authorize request in progress: validated parameters kept
// server side while the user logs in, picks a patient and consents.
type AuthRequest struct {
	ID            string // random, unguessable; carried in the page forms
	ClientID      string
	RedirectURI   string
	State         string
	Scope         string // requested scope string as sent
	Nonce         string
	CodeChallenge string
	Audience      string
	Launch        *LaunchContext // bound EHR launch context, if any
	UserID        string         // set once the user has logged in
	Patient       string         // set once a patient was chosen (standalone launch/patient)
	ResponseMode  string
	Prompt        string // OpenID Connect prompt values as sent (space-separated)
	DPoPJKT       string // RFC 9449 §10: dpop_jkt; the code will be bound to this key
	Pushed        bool   // RFC 9126: created by /par (its ID is the request_uri's secret part)
	CreatedAt     time.Time
	ExpiresAt     time.Time
}

// AuthCode is an issued authorization code.
type AuthCode struct {
	Hash          []byte
	ClientID      string
	RedirectURI   string
	CodeChallenge string // S256 challenge
	Scope         string // granted scopes
	UserID        string
	Nonce         string
	AuthTime      time.Time
	Context       LaunchContext
	FamilyID      string // token family created for the tokens this code yields
	DPoPJKT       string // RFC 9449 §10: the code is bound to this DPoP key thumbprint
	SessionHash   []byte // the login session that approved it (online_access families end with it)
	AMR           string // space-separated authentication methods of that session (RFC 8176), e.g. "pwd otp"
	ACR           string // authentication context class reference of that session
	CreatedAt     time.Time
	ExpiresAt     time.Time
	UsedAt        time.Time // zero until consumed
}

// Session is a browser login session.
type Session struct {
	Hash      []byte // SHA-256 of the cookie value
	UserID    string
	CSRFToken string // per-session CSRF secret (random, compared in constant time)
	AMR       string // space-separated authentication methods used (RFC 8176): "pwd", "pwd otp"
	ACR       string // authentication context class reference reached (see package mfa)
	AuthTime  time.Time
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
}

// Consent is what a user approved for a client; it is remembered until revoked.
type Consent struct {
	UserID    string
	ClientID  string
	Scope     string // approved scopes
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TokenFamily groups every refresh and access token descended from one grant
// (one authorization code). Revoking the family revokes them all.
type TokenFamily struct {
	ID             string
	ClientID       string
	UserID         string
	Scope          string
	Context        LaunchContext
	CreatedAt      time.Time
	ExpiresAt      time.Time // absolute end of the family (refresh token absolute lifetime)
	RevokedAt      time.Time // zero unless revoked
	Reason         string    // why it was revoked
	DPoPJKT        string    // refresh tokens of this family need proofs with this key (public DPoP clients)
	CertThumbprint string    // x5t#S256 the family's tokens are bound to (mTLS clients)
	SessionHash    []byte    // for online_access: the login session the family ends with
}

// RefreshToken is one refresh token of a family.
type RefreshToken struct {
	Hash          []byte
	FamilyID      string
	ClientID      string
	UserID        string
	Scope         string
	CreatedAt     time.Time
	ExpiresAt     time.Time
	UsedAt        time.Time // set when rotated
	SuccessorHash []byte    // the token this one was rotated into (retry window, reuse detection)
}

// SigningKey is a server signing key. The private key is encrypted.
type SigningKey struct {
	KID              string
	Alg              string // "ES256" or "RS256"
	PublicJWK        []byte // public JWK JSON
	EncryptedPrivate []byte // private key sealed with the key-encryption key
	CreatedAt        time.Time
	Active           bool      // the key new tokens of this alg are signed with
	RetiredAt        time.Time // zero while active; retired keys keep verifying
}

// RegistrationToken is an RFC 7591 initial access token.
type RegistrationToken struct {
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Patient is an entry in the patient directory used by the clinician picker.
type Patient struct {
	ID        string // bare FHIR id
	Name      string // display name, e.g. "Amy Shaw"
	BirthDate string // YYYY-MM-DD
}

// Users stores local accounts.
type Users interface {
	CreateUser(ctx context.Context, u *User) error // ErrConflict on a taken username
	GetUser(ctx context.Context, id string) (*User, error)
	GetUserByUsername(ctx context.Context, username string) (*User, error)
	ListUsers(ctx context.Context) ([]User, error)
	DeleteUser(ctx context.Context, id string) error
	// RecordLoginFailure atomically increments the failure count and, when it
	// reaches maxFailures, sets LockedUntil = now+lockFor. It returns the
	// updated user.
	RecordLoginFailure(ctx context.Context, id string, now time.Time, maxFailures int, lockFor time.Duration) (*User, error)
	// RecordLoginSuccess resets the failure count and the lock.
	RecordLoginSuccess(ctx context.Context, id string) error
}

// Clients stores registered clients.
type Clients interface {
	CreateClient(ctx context.Context, c *Client) error // ErrConflict on a taken id
	GetClient(ctx context.Context, id string) (*Client, error)
	ListClients(ctx context.Context) ([]Client, error)
	// UpdateClient reads the client, calls update on it and writes the result,
	// in one transaction. An error from update aborts the write.
	UpdateClient(ctx context.Context, id string, update func(*Client) error) (*Client, error)
	DeleteClient(ctx context.Context, id string) error
}

// Launches stores EHR launch values.
type Launches interface {
	CreateLaunch(ctx context.Context, l *Launch) error
	// ConsumeLaunch marks the launch used and returns it: ErrNotFound if
	// unknown, ErrExpired if past ExpiresAt, ErrAlreadyUsed if consumed before.
	// Exactly one concurrent caller succeeds.
	ConsumeLaunch(ctx context.Context, hash []byte, now time.Time) (*Launch, error)
}

// AuthRequests stores /authorize requests in progress.
type AuthRequests interface {
	CreateAuthRequest(ctx context.Context, r *AuthRequest) error
	// GetAuthRequest returns ErrNotFound if unknown and ErrExpired if past ExpiresAt.
	GetAuthRequest(ctx context.Context, id string, now time.Time) (*AuthRequest, error)
	UpdateAuthRequest(ctx context.Context, id string, update func(*AuthRequest) error) (*AuthRequest, error)
	DeleteAuthRequest(ctx context.Context, id string) error
}

// AuthCodes stores authorization codes.
type AuthCodes interface {
	CreateAuthCode(ctx context.Context, c *AuthCode) error
	// ConsumeAuthCode marks the code used and returns it, in one transaction.
	// ErrNotFound: unknown. ErrExpired: past ExpiresAt (returned with the code).
	// ErrAlreadyUsed: consumed before; the code record is returned too, so the
	// caller can revoke its family. Exactly one concurrent caller succeeds.
	ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time) (*AuthCode, error)
	// RedeemAuthCode is the code exchange: it calls exchange with the code
	// and the user it was issued to, as the store holds that user (nil when
	// no user has the code's UserID any more), and, in one transaction,
	// consumes the code as ConsumeAuthCode does and
	// inserts the Redemption exchange returned (the token family, whose ID
	// must be the code's FamilyID, and an optional refresh token). If
	// exchange fails, the code is consumed all the same (a failed exchange
	// burns it), nothing else is written, and exchange's error is returned
	// with the code. Unknown, expired and used codes are reported as by
	// ConsumeAuthCode without calling exchange, so a reused code's family
	// exists whenever an earlier exchange succeeded. A store may call
	// exchange before the transaction that decides which of several
	// concurrent callers consumes the code; the others then get
	// ErrAlreadyUsed and what their exchange returned is dropped, so
	// exchange must have no effect beyond its result (a store may also run
	// it twice). A store may return a success before its transaction has
	// committed, with durable set: the caller must then call durable, and
	// see it return nil, before anything issued from the code leaves the
	// process (a non-nil error means the redemption did not happen). durable
	// is nil when the redemption is already committed, and on every error.
	RedeemAuthCode(ctx context.Context, hash []byte, now time.Time, exchange func(*AuthCode, *User) (*Redemption, error)) (code *AuthCode, durable func() error, err error)
}

// Redemption is what a successful code exchange writes with the code's
// consumption.
type Redemption struct {
	Family  *TokenFamily
	Refresh *RefreshToken // nil when no refresh token is issued
}

// ErrBadRedemption: an exchange returned no family, or one whose ID is not
// the code's FamilyID, or a refresh token of another family.
var ErrBadRedemption = errors.New("storage: redemption does not match the code")

// CheckRedemption validates r against the code it redeems.
func CheckRedemption(c *AuthCode, r *Redemption) error {
	if r == nil || r.Family == nil || c.FamilyID == "" || r.Family.ID != c.FamilyID ||
		(r.Refresh != nil && r.Refresh.FamilyID != c.FamilyID) {
		return ErrBadRedemption
	}
	return nil
}

// Sessions stores browser login sessions.
type Sessions interface {
	CreateSession(ctx context.Context, s *Session) error
	// GetSession returns ErrNotFound if unknown and ErrExpired if past ExpiresAt.
	GetSession(ctx context.Context, hash []byte, now time.Time) (*Session, error)
	TouchSession(ctx context.Context, hash []byte, now time.Time) error
	DeleteSession(ctx context.Context, hash []byte) error
	// DeleteUserSessions deletes every session of userID (account locked);
	// none is not an error.
	DeleteUserSessions(ctx context.Context, userID string) error
}

// Consents stores remembered consents.
type Consents interface {
	GetConsent(ctx context.Context, userID, clientID string) (*Consent, error)
	PutConsent(ctx context.Context, c *Consent) error // insert or replace
	DeleteConsent(ctx context.Context, userID, clientID string) error
	// RevokeConsent deletes the consent and revokes every unrevoked token
	// family of userID and clientID with reason, in one transaction. It
	// returns ErrNotFound when there was neither a consent nor a live family.
	RevokeConsent(ctx context.Context, userID, clientID string, now time.Time, reason string) error
}

// Tokens stores token families and refresh tokens.
type Tokens interface {
	CreateFamily(ctx context.Context, f *TokenFamily) error
	GetFamily(ctx context.Context, id string) (*TokenFamily, error)
	// RevokeFamily marks the family and all its refresh tokens revoked.
	// Revoking an already revoked family is not an error.
	RevokeFamily(ctx context.Context, id string, now time.Time, reason string) error
	// RevokeFamiliesFor revokes every family of userID and clientID (consent revoked).
	RevokeFamiliesFor(ctx context.Context, userID, clientID string, now time.Time, reason string) error
	// RevokeClientFamilies revokes every unrevoked family of clientID, for
	// every user (client disabled).
	RevokeClientFamilies(ctx context.Context, clientID string, now time.Time, reason string) error
	// RevokeUserFamilies revokes every unrevoked family of userID, for every
	// client (account locked by an administrator).
	RevokeUserFamilies(ctx context.Context, userID string, now time.Time, reason string) error
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error
	// GetRefreshGrant returns the refresh token stored under hash, its
	// family and the user it was issued to (nil when no user has the token's
	// UserID any more), read together: ErrNotFound if there is no such token.
	GetRefreshGrant(ctx context.Context, hash []byte) (*RefreshToken, *TokenFamily, *User, error)
	// RotateRefreshToken, in one transaction, checks the token under oldHash
	// and replaces it with next (which must carry the same FamilyID),
	// recording next.Hash as the old token's SuccessorHash: ErrNotFound if
	// unknown; ErrRevoked if its family is revoked; ErrExpired if past
	// ExpiresAt or the family's; ErrAlreadyUsed if it was rotated before, in
	// which case the family is revoked in the same transaction (reuse
	// detection). On success it returns the old token.
	//
	// Retry window (FAPI 2.0 §5.3.2.1): a token rotated less than
	// retryWindow ago (measured from its first rotation) whose successor was
	// never used rotates again: the unused successor is marked used (so
	// presenting it later is reuse) and next becomes the successor. After
	// the window, or once the successor was used, it is reuse as above. With
	// retryWindow 0 exactly one concurrent caller succeeds; with any window,
	// concurrent callers never leave two valid refresh tokens behind.
	RotateRefreshToken(ctx context.Context, oldHash []byte, next *RefreshToken, now time.Time, retryWindow time.Duration) (*RefreshToken, error)
	GetRefreshToken(ctx context.Context, hash []byte) (*RefreshToken, error)
}

// Keys stores signing keys.
type Keys interface {
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	ListSigningKeys(ctx context.Context) ([]SigningKey, error) // oldest first
	// ActivateSigningKey makes kid the active key of its alg and retires the
	// previously active key of that alg, in one transaction.
	ActivateSigningKey(ctx context.Context, kid string, now time.Time) error
}

// RegistrationTokens stores RFC 7591 initial access tokens.
type RegistrationTokens interface {
	CreateRegistrationToken(ctx context.Context, t *RegistrationToken) error
	// GetRegistrationToken returns ErrNotFound if unknown and ErrExpired if past ExpiresAt.
	GetRegistrationToken(ctx context.Context, hash []byte, now time.Time) (*RegistrationToken, error)
}

// Patients is the patient directory the clinician picker searches.
type Patients interface {
	PutPatient(ctx context.Context, p *Patient) error // insert or replace
	GetPatient(ctx context.Context, id string) (*Patient, error)
	// SearchPatients matches name case-insensitively as a substring; an empty
	// name lists all. At most limit results, ordered by name.
	SearchPatients(ctx context.Context, name string, limit int) ([]Patient, error)
}

// Store is a whole backend.
type Store interface {
	Users
	Clients
	Launches
	AuthRequests
	AuthCodes
	Sessions
	Consents
	Tokens
	Keys
	RegistrationTokens
	Patients
	RevocationList
	Replays
	MFA
	AppAccesses
	// Ping checks the backend answers.
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}
