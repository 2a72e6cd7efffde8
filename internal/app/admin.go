package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/launch"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// The administration functions below are what `fhirgate users|clients|launch|
// patients` call; tests and the end-to-end test use them the same way. They
// validate their input and return errors wrapping ErrInvalidInput for bad
// input, and storage sentinels (ErrConflict, ErrNotFound) otherwise.

// ErrInvalidInput marks a refused administrative request.
var ErrInvalidInput = errors.New("invalid input")

// fhirID is the FHIR id syntax (R4 datatypes: [A-Za-z0-9\-\.]{1,64}).
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// userTypes are the resource types a fhirUser may reference (SMART App Launch).
var userTypes = map[string]bool{"Patient": true, "Practitioner": true, "PractitionerRole": true, "RelatedPerson": true, "Person": true}

// NewUser describes an account to create.
type NewUser struct {
	Username string
	Password string
	Role     storage.Role
	FHIRUser string // relative reference such as Patient/123; required for patients
}

// PasswordParams are the argon2id parameters new passwords are hashed with.
// Tests may lower them; the CLI uses password.Default.
type PasswordParams = password.Params

// CreateUser validates u, hashes the password with argon2id and stores the
// account. A taken username is storage.ErrConflict.
func CreateUser(ctx context.Context, users storage.Users, u NewUser, params PasswordParams, now time.Time) (*storage.User, error) {
	u.Username = strings.TrimSpace(u.Username)
	var problems []string
	if u.Username == "" || len(u.Username) > 200 || strings.ContainsAny(u.Username, " \t\r\n") {
		problems = append(problems, "username must be 1-200 characters without spaces")
	}
	if !u.Role.Valid() {
		problems = append(problems, fmt.Sprintf("role must be patient, clinician or admin, got %q", u.Role))
	}
	if u.FHIRUser != "" {
		typ, id, ok := strings.Cut(u.FHIRUser, "/")
		if !ok || !userTypes[typ] || !fhirID.MatchString(id) {
			problems = append(problems, fmt.Sprintf("fhir-user must be a reference like Patient/123 or Practitioner/9, got %q", u.FHIRUser))
		} else if u.Role == storage.RolePatient && typ != "Patient" {
			problems = append(problems, "a patient user's fhir-user must be a Patient reference")
		}
	} else if u.Role == storage.RolePatient {
		problems = append(problems, "a patient user needs --fhir-user Patient/<id>")
	}
	if len(u.Password) < password.MinLength {
		problems = append(problems, fmt.Sprintf("password must be at least %d characters", password.MinLength))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidInput, strings.Join(problems, "; "))
	}
	hash, err := password.Hash(u.Password, params)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	rec := &storage.User{
		ID:           secret.ID(),
		Username:     u.Username,
		PasswordHash: hash,
		Role:         u.Role,
		FHIRUser:     u.FHIRUser,
		CreatedAt:    now.UTC(),
	}
	if err := users.CreateUser(ctx, rec); err != nil {
		return nil, fmt.Errorf("create user %q: %w", u.Username, err)
	}
	return rec, nil
}

// DeleteUser removes the account named username.
func DeleteUser(ctx context.Context, users storage.Users, username string) error {
	u, err := users.GetUserByUsername(ctx, username)
	if err != nil {
		return fmt.Errorf("user %q: %w", username, err)
	}
	if err := users.DeleteUser(ctx, u.ID); err != nil {
		return fmt.Errorf("delete user %q: %w", username, err)
	}
	return nil
}

// CreateClient registers a client with the same rules as dynamic client
// registration and returns it with its secret (shown once; "" for public
// clients).
func CreateClient(ctx context.Context, clients storage.Clients, m clientreg.Metadata, now time.Time) (*storage.Client, string, error) {
	c, sec, err := clientreg.Create(ctx, clients, m, now)
	if err != nil {
		return nil, "", fmt.Errorf("create client: %w", err)
	}
	return c, sec, nil
}

// DeleteClient removes a client.
func DeleteClient(ctx context.Context, clients storage.Clients, id string) error {
	if err := clients.DeleteClient(ctx, id); err != nil {
		return fmt.Errorf("delete client %q: %w", id, err)
	}
	return nil
}

// CreateLaunch creates an EHR launch value for a patient (Patient/123 or
// 123) and optional encounter, valid for launch.DefaultTTL.
func CreateLaunch(ctx context.Context, launches storage.Launches, patient, encounter string, now time.Time) (string, error) {
	if strings.TrimSpace(patient) == "" {
		return "", fmt.Errorf("%w: --patient is required", ErrInvalidInput)
	}
	v, err := launch.Create(ctx, launches, storage.LaunchContext{Patient: patient, Encounter: encounter}, now, launch.DefaultTTL)
	if err != nil {
		if errors.Is(err, launch.ErrInvalidContext) {
			return "", fmt.Errorf("%w: %v", ErrInvalidInput, err)
		}
		return "", fmt.Errorf("create launch: %w", err)
	}
	return v, nil
}

// AddPatient puts a patient in the picker directory (insert or replace).
func AddPatient(ctx context.Context, patients storage.Patients, p storage.Patient) error {
	p.ID = strings.TrimPrefix(strings.TrimSpace(p.ID), "Patient/")
	p.Name = strings.TrimSpace(p.Name)
	var problems []string
	if !fhirID.MatchString(p.ID) {
		problems = append(problems, fmt.Sprintf("id must be a FHIR id (letters, digits, - and ., at most 64), got %q", p.ID))
	}
	if p.Name == "" || len(p.Name) > 200 {
		problems = append(problems, "name must be 1-200 characters")
	}
	if p.BirthDate != "" {
		if _, err := time.Parse(time.DateOnly, p.BirthDate); err != nil {
			problems = append(problems, fmt.Sprintf("birth-date must be YYYY-MM-DD, got %q", p.BirthDate))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidInput, strings.Join(problems, "; "))
	}
	if err := patients.PutPatient(ctx, &p); err != nil {
		return fmt.Errorf("add patient: %w", err)
	}
	return nil
}

// NewRegistrationToken issues an RFC 7591 initial access token valid for ttl.
func NewRegistrationToken(ctx context.Context, store storage.RegistrationTokens, ttl time.Duration, now time.Time) (string, error) {
	t, err := clientreg.NewRegistrationToken(ctx, store, ttl, now)
	if err != nil {
		if errors.Is(err, clientreg.ErrInvalidTTL) {
			return "", fmt.Errorf("%w: %v", ErrInvalidInput, err)
		}
		return "", fmt.Errorf("registration token: %w", err)
	}
	return t, nil
}
