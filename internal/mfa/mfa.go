package mfa

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Authentication method references (RFC 8176) and the context classes this
// server reports in the id_token's amr and acr.
const (
	MethodPassword = session.MethodPassword
	MethodOTP      = session.MethodOTP
	ACRPassword    = session.ACRPassword
	ACRMultiFactor = session.ACRMultiFactor
)

// Audit actions.
const (
	ActionEnrolled audit.Action = "mfa.enrolled"
	ActionVerified audit.Action = "mfa.verified"
	ActionReset    audit.Action = "mfa.reset"
	// ActionProvisioned: an administrator created a user's TOTP key to hand
	// over out of band (Service.Provision).
	ActionProvisioned audit.Action = "mfa.provisioned"
)

// Enrolment says who may create a user's first TOTP key.
type Enrolment string

// Enrolment modes (login.mfa_enrolment).
const (
	// EnrolSelf: a signed-in user sets up their own second factor on the
	// enrol page (the key is shown there); the password alone protects that
	// first enrolment.
	EnrolSelf Enrolment = "self"
	// EnrolProvisioned: an administrator creates the key with `fhirgate
	// users mfa-provision` and hands it over out of band; the enrol page
	// only confirms such a key with a first code and never shows one, so
	// a stolen password cannot enrol an attacker's authenticator.
	EnrolProvisioned Enrolment = "provisioned"
)

// Errors. Show users Message(err).
var (
	ErrInvalidCode     = errors.New("mfa: invalid code")
	ErrReplayed        = errors.New("mfa: code already used")
	ErrNotEnrolled     = errors.New("mfa: not enrolled")
	ErrAlreadyEnrolled = errors.New("mfa: already enrolled")
	// ErrNotProvisioned: with EnrolProvisioned, the user has no key an
	// administrator provisioned.
	ErrNotProvisioned = errors.New("mfa: no provisioned key")
)

// Message is the text to show for a verification error ("" for others).
func Message(err error) string {
	switch {
	case errors.Is(err, ErrReplayed):
		return "That code was already used. Wait for the next code and try again."
	case errors.Is(err, ErrInvalidCode):
		return "That code is not right. Check your authenticator app and try again."
	}
	return ""
}

// RecoveryCodes is how many recovery codes an enrolment makes.
const RecoveryCodes = 10

// Options configures a Service.
type Options struct {
	Store storage.MFA
	// KEK is the key-encryption key TOTP keys are sealed under (the one
	// signing keys use); at least 16 bytes.
	KEK []byte
	// Issuer names this server in authenticator apps ("fhirgate" by default).
	Issuer string
	// Enrolment is EnrolSelf (the default) or EnrolProvisioned.
	Enrolment Enrolment
	Auditor   audit.Auditor
	Logger    *slog.Logger
	Now       func() time.Time
}

// Service enrols and verifies second factors.
type Service struct {
	store     storage.MFA
	seal      *sealer
	issuer    string
	enrolment Enrolment
	audit     audit.Auditor
	logger    *slog.Logger
	now       func() time.Time
}

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Auditor == nil {
		return nil, errors.New("mfa: Options.Store and Auditor are required")
	}
	s, err := newSealer(opts.KEK)
	if err != nil {
		return nil, err
	}
	switch opts.Enrolment {
	case "":
		opts.Enrolment = EnrolSelf
	case EnrolSelf, EnrolProvisioned:
	default:
		return nil, fmt.Errorf("mfa: Enrolment must be %q or %q, got %q", EnrolSelf, EnrolProvisioned, opts.Enrolment)
	}
	svc := &Service{store: opts.Store, seal: s, issuer: opts.Issuer, enrolment: opts.Enrolment,
		audit: opts.Auditor, logger: opts.Logger, now: opts.Now}
	if svc.issuer == "" {
		svc.issuer = "fhirgate"
	}
	if svc.logger == nil {
		svc.logger = slog.New(slog.DiscardHandler)
	}
	if svc.now == nil {
		svc.now = time.Now
	}
	return svc, nil
}

// Enrolled reports whether userID has a confirmed second factor.
func (s *Service) Enrolled(ctx context.Context, userID string) (bool, error) {
	c, err := s.store.GetMFA(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mfa: get: %w", err)
	}
	return c.Confirmed, nil
}

// Pending returns the otpauth URI and key of userID's unconfirmed
// enrolment, starting one (a fresh key) when there is none. It returns
// ErrAlreadyEnrolled for a confirmed one: an enrolment is only replaced
// after an administrator resets it. A provisioned key is never returned
// (its holder got it out of band): then uri and key are "". With
// EnrolProvisioned it starts nothing, and a user without a provisioned key
// gets ErrNotProvisioned.
func (s *Service) Pending(ctx context.Context, userID, account string) (uri, key string, err error) {
	c, err := s.store.GetMFA(ctx, userID)
	switch {
	case err == nil && c.Confirmed:
		return "", "", ErrAlreadyEnrolled
	case err == nil && c.Provisioned:
		return "", "", nil
	case s.enrolment == EnrolProvisioned && (err == nil || errors.Is(err, storage.ErrNotFound)):
		return "", "", ErrNotProvisioned
	case err == nil:
		raw, oerr := s.seal.open(userID, c.SealedSecret)
		if oerr == nil {
			return URI(s.issuer, account, raw), EncodeKey(raw), nil
		}
	case !errors.Is(err, storage.ErrNotFound):
		return "", "", fmt.Errorf("mfa: get: %w", err)
	}
	return s.start(ctx, userID, account, false)
}

// Provision creates a fresh key for userID's first enrolment, replacing an
// unconfirmed one, and returns it to be handed over out of band; the user
// confirms it with a first code on the enrol page. ErrAlreadyEnrolled for
// a confirmed enrolment (reset it first).
func (s *Service) Provision(ctx context.Context, userID, account, by string) (uri, key string, err error) {
	c, err := s.store.GetMFA(ctx, userID)
	switch {
	case err == nil && c.Confirmed:
		return "", "", ErrAlreadyEnrolled
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return "", "", fmt.Errorf("mfa: get: %w", err)
	}
	if uri, key, err = s.start(ctx, userID, account, true); err != nil {
		return "", "", err
	}
	if err := s.audit.Record(ctx, audit.Event{Time: s.now(), Action: ActionProvisioned, Outcome: audit.Success,
		UserID: userID, Reason: "provisioned by " + by}); err != nil {
		return "", "", fmt.Errorf("mfa: audit: %w", err)
	}
	return uri, key, nil
}

// start stores a fresh pending key for userID and returns it.
func (s *Service) start(ctx context.Context, userID, account string, provisioned bool) (uri, key string, err error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return "", "", fmt.Errorf("mfa: key: %w", err)
	}
	sealed, err := s.seal.seal(userID, raw)
	if err != nil {
		return "", "", err
	}
	now := s.now()
	if err := s.store.PutMFA(ctx, &storage.MFACredential{UserID: userID, SealedSecret: sealed, Provisioned: provisioned,
		CreatedAt: now, UpdatedAt: now}); err != nil {
		return "", "", fmt.Errorf("mfa: store pending: %w", err)
	}
	return URI(s.issuer, account, raw), EncodeKey(raw), nil
}

// QRCode renders an otpauth URI as a PNG QR code.
func QRCode(uri string) ([]byte, error) {
	png, err := qrcode.Encode(uri, qrcode.Medium, 256)
	if err != nil {
		return nil, fmt.Errorf("mfa: qr code: %w", err)
	}
	return png, nil
}

// Confirm finishes userID's pending enrolment with a first code and returns
// the recovery codes, shown once (only their hashes are kept).
func (s *Service) Confirm(ctx context.Context, userID, code string) ([]string, error) {
	c, err := s.store.GetMFA(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("mfa: get: %w", err)
	}
	if c.Confirmed {
		return nil, ErrAlreadyEnrolled
	}
	if s.enrolment == EnrolProvisioned && !c.Provisioned {
		return nil, ErrNotProvisioned
	}
	key, err := s.seal.open(userID, c.SealedSecret)
	if err != nil {
		return nil, err
	}
	now := s.now()
	step, ok := Match(key, code, now)
	if !ok {
		s.record(ctx, audit.Event{Time: now, Action: ActionEnrolled, Outcome: audit.Failure, UserID: userID, Reason: "wrong code"})
		return nil, ErrInvalidCode
	}
	codes := make([]string, RecoveryCodes)
	c.RecoveryHashes = nil
	for i := range codes {
		codes[i] = newRecoveryCode()
		c.RecoveryHashes = append(c.RecoveryHashes, storage.HashSecret(codes[i]))
	}
	c.Confirmed, c.LastStep, c.UpdatedAt = true, step, now
	if err := s.store.PutMFA(ctx, c); err != nil {
		return nil, fmt.Errorf("mfa: confirm: %w", err)
	}
	if err := s.audit.Record(ctx, audit.Event{Time: now, Action: ActionEnrolled, Outcome: audit.Success, UserID: userID}); err != nil {
		return nil, fmt.Errorf("mfa: audit: %w", err)
	}
	return codes, nil
}

// Verify checks a TOTP code or a recovery code for userID. A TOTP step is
// accepted once (ErrReplayed for it or any earlier step); a recovery code
// is used up. It returns ErrNotEnrolled without a confirmed enrolment.
func (s *Service) Verify(ctx context.Context, userID, code string) error {
	now := s.now()
	ev := audit.Event{Time: now, Action: ActionVerified, UserID: userID}
	c, err := s.store.GetMFA(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && !c.Confirmed) {
		return ErrNotEnrolled
	}
	if err != nil {
		return fmt.Errorf("mfa: get: %w", err)
	}
	key, err := s.seal.open(userID, c.SealedSecret)
	if err != nil {
		return err
	}
	fail := func(e error, reason string) error {
		ev.Outcome, ev.Reason = audit.Failure, reason
		s.record(ctx, ev)
		return e
	}
	if norm := normalizeRecovery(code); len(norm) == recoveryLen {
		err := s.store.UseRecoveryCode(ctx, userID, storage.HashSecret(formatRecovery(norm)), now)
		if errors.Is(err, storage.ErrNotFound) {
			return fail(ErrInvalidCode, "unknown or used recovery code")
		}
		if err != nil {
			return fmt.Errorf("mfa: use recovery code: %w", err)
		}
		ev.Reason = "recovery code"
	} else {
		step, ok := Match(key, code, now)
		if !ok {
			return fail(ErrInvalidCode, "wrong code")
		}
		err := s.store.UseTOTPStep(ctx, userID, step, now)
		if errors.Is(err, storage.ErrAlreadyUsed) {
			return fail(ErrReplayed, "replayed code")
		}
		if err != nil {
			return fmt.Errorf("mfa: use step: %w", err)
		}
	}
	ev.Outcome = audit.Success
	if err := s.audit.Record(ctx, ev); err != nil {
		return fmt.Errorf("mfa: audit: %w", err) // fail closed
	}
	return nil
}

// Reset removes userID's enrolment (an administrator's act; by names the admin).
func (s *Service) Reset(ctx context.Context, userID, by string) error {
	if err := s.store.DeleteMFA(ctx, userID); err != nil {
		return fmt.Errorf("mfa: reset: %w", err)
	}
	return s.audit.Record(ctx, audit.Event{Time: s.now(), Action: ActionReset, Outcome: audit.Success, UserID: userID, Reason: "reset by " + by})
}

func (s *Service) record(ctx context.Context, ev audit.Event) {
	if err := s.audit.Record(ctx, ev); err != nil {
		s.logger.ErrorContext(ctx, "audit write failed", slog.String("action", string(ev.Action)), slog.Any("err", err))
	}
}

// Recovery codes: 16 characters of an unambiguous alphabet (80 bits),
// shown as four groups of four.
const (
	recoveryAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"
	recoveryLen      = 16
)

func newRecoveryCode() string {
	var b bytes.Buffer
	buf := make([]byte, 1)
	for b.Len() < recoveryLen {
		if _, err := rand.Read(buf); err != nil {
			panic("mfa: crypto/rand failed: " + err.Error()) // never happens on supported platforms
		}
		if int(buf[0]) >= 256-256%len(recoveryAlphabet) {
			continue // no modulo bias
		}
		b.WriteByte(recoveryAlphabet[int(buf[0])%len(recoveryAlphabet)])
	}
	return formatRecovery(b.String())
}

func formatRecovery(s string) string {
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// normalizeRecovery lowercases and drops separators; "" when the input
// cannot be a recovery code.
func normalizeRecovery(s string) string {
	s = strings.ToLower(normalizeCode(s))
	if len(s) != recoveryLen {
		return ""
	}
	for _, r := range s {
		if !strings.ContainsRune(recoveryAlphabet, r) {
			return ""
		}
	}
	return s
}
