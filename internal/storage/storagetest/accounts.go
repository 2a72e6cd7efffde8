package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

func newUser(id, username string) *storage.User {
	return &storage.User{
		ID:           id,
		Username:     username,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		Role:         storage.RoleClinician,
		FHIRUser:     "Practitioner/" + id,
		CreatedAt:    base,
	}
}

func testUsers(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	_, err := s.GetUser(ctx, "nobody")
	wantErr(t, "GetUser unknown", err, storage.ErrNotFound)
	_, err = s.GetUserByUsername(ctx, "nobody")
	wantErr(t, "GetUserByUsername unknown", err, storage.ErrNotFound)
	users, err := s.ListUsers(ctx)
	wantErr(t, "ListUsers empty", err, nil)
	if len(users) != 0 {
		t.Fatalf("ListUsers on empty store: %d users", len(users))
	}

	bob := newUser("u-bob", "bob")
	bob.FailedLogins = 2
	bob.LockedUntil = base.Add(time.Hour)
	wantErr(t, "CreateUser", s.CreateUser(ctx, bob), nil)
	amy := newUser("u-amy", "amy")
	amy.Role = storage.RolePatient
	wantErr(t, "CreateUser", s.CreateUser(ctx, amy), nil)

	got, err := s.GetUser(ctx, "u-bob")
	wantErr(t, "GetUser", err, nil)
	mustEqual(t, "GetUser", got, bob)
	got, err = s.GetUserByUsername(ctx, "amy")
	wantErr(t, "GetUserByUsername", err, nil)
	mustEqual(t, "GetUserByUsername", got, amy)
	_, err = s.GetUserByUsername(ctx, "AMY")
	wantErr(t, "GetUserByUsername is exact", err, storage.ErrNotFound)

	wantErr(t, "CreateUser same id", s.CreateUser(ctx, newUser("u-bob", "other")), storage.ErrConflict)
	wantErr(t, "CreateUser same username", s.CreateUser(ctx, newUser("u-other", "bob")), storage.ErrConflict)

	users, err = s.ListUsers(ctx)
	wantErr(t, "ListUsers", err, nil)
	mustEqual(t, "ListUsers (by username)", users, []storage.User{*amy, *bob})

	wantErr(t, "DeleteUser", s.DeleteUser(ctx, "u-amy"), nil)
	_, err = s.GetUser(ctx, "u-amy")
	wantErr(t, "GetUser deleted", err, storage.ErrNotFound)
	wantErr(t, "DeleteUser again", s.DeleteUser(ctx, "u-amy"), storage.ErrNotFound)
	wantErr(t, "CreateUser reuses freed username", s.CreateUser(ctx, newUser("u-amy2", "amy")), nil)
}

func testUserLockout(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Minute)
	const lockFor = 15 * time.Minute
	_, err := s.RecordLoginFailure(ctx, "nobody", now, 3, lockFor)
	wantErr(t, "RecordLoginFailure unknown", err, storage.ErrNotFound)
	wantErr(t, "RecordLoginSuccess unknown", s.RecordLoginSuccess(ctx, "nobody"), storage.ErrNotFound)

	wantErr(t, "CreateUser", s.CreateUser(ctx, newUser("u1", "eve")), nil)
	for i := 1; i <= 2; i++ {
		u, err := s.RecordLoginFailure(ctx, "u1", now, 3, lockFor)
		wantErr(t, "RecordLoginFailure", err, nil)
		if u.FailedLogins != i || !u.LockedUntil.IsZero() {
			t.Fatalf("after %d failures: count %d, locked until %v; want %d, not locked", i, u.FailedLogins, u.LockedUntil, i)
		}
	}
	u, err := s.RecordLoginFailure(ctx, "u1", now, 3, lockFor)
	wantErr(t, "RecordLoginFailure", err, nil)
	if u.FailedLogins != 3 || !u.LockedUntil.Equal(now.Add(lockFor).Truncate(Precision)) {
		t.Fatalf("at maxFailures: count %d, locked until %v; want 3, %v", u.FailedLogins, u.LockedUntil, now.Add(lockFor))
	}
	stored, err := s.GetUser(ctx, "u1")
	wantErr(t, "GetUser", err, nil)
	mustEqual(t, "locked user", stored, u)

	later := now.Add(time.Minute)
	u, err = s.RecordLoginFailure(ctx, "u1", later, 3, lockFor)
	wantErr(t, "RecordLoginFailure past max", err, nil)
	if u.FailedLogins != 4 || !u.LockedUntil.Equal(later.Add(lockFor).Truncate(Precision)) {
		t.Fatalf("past maxFailures: count %d, locked until %v; want 4 and lock extended", u.FailedLogins, u.LockedUntil)
	}

	wantErr(t, "RecordLoginSuccess", s.RecordLoginSuccess(ctx, "u1"), nil)
	u, err = s.GetUser(ctx, "u1")
	wantErr(t, "GetUser", err, nil)
	if u.FailedLogins != 0 || !u.LockedUntil.IsZero() {
		t.Fatalf("after success: count %d, locked until %v; want reset", u.FailedLogins, u.LockedUntil)
	}

	u, err = s.RecordLoginFailure(ctx, "u1", now, 0, lockFor)
	wantErr(t, "RecordLoginFailure maxFailures 0", err, nil)
	if !u.LockedUntil.IsZero() {
		t.Fatalf("maxFailures 0 locked the account until %v", u.LockedUntil)
	}
	wantErr(t, "RecordLoginSuccess", s.RecordLoginSuccess(ctx, "u1"), nil)

	// Concurrent failures are counted atomically: none is lost.
	errs := race(Racers, func(int) error {
		_, err := s.RecordLoginFailure(ctx, "u1", now, 1000, lockFor)
		return err
	})
	for _, err := range errs {
		wantErr(t, "concurrent RecordLoginFailure", err, nil)
	}
	u, err = s.GetUser(ctx, "u1")
	wantErr(t, "GetUser", err, nil)
	if u.FailedLogins != Racers {
		t.Fatalf("after %d concurrent failures the count is %d", Racers, u.FailedLogins)
	}
}

func newClient(id string) *storage.Client {
	return &storage.Client{
		ID:                       id,
		Name:                     "App " + id,
		SecretHash:               hash("secret-" + id),
		AuthMethod:               "client_secret_basic",
		RedirectURIs:             []string{"https://app.example/cb", "http://127.0.0.1/cb"},
		Scope:                    "openid fhirUser launch/patient patient/*.rs",
		GrantTypes:               []string{"authorization_code", "refresh_token"},
		LaunchURI:                "https://app.example/launch",
		LogoURI:                  "https://app.example/logo.png",
		IDTokenSignedResponseAlg: "ES256",
		JWKS:                     []byte(`{"keys":[]}`),
		JWKSURI:                  "https://app.example/jwks",
		RegistrationTokenHash:    hash("reg-" + id),
		DPoPBoundAccessTokens:    true,
		RequirePAR:               true,
		TLSClientAuthSubjectDN:   "CN=" + id + ",O=Example",
		Disabled:                 false,
		CreatedAt:                base,
		UpdatedAt:                base.Add(time.Second),
	}
}

func testClients(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	_, err := s.GetClient(ctx, "nope")
	wantErr(t, "GetClient unknown", err, storage.ErrNotFound)
	wantErr(t, "DeleteClient unknown", s.DeleteClient(ctx, "nope"), storage.ErrNotFound)

	full := newClient("c-full")
	full.Disabled = true
	wantErr(t, "CreateClient", s.CreateClient(ctx, full), nil)
	got, err := s.GetClient(ctx, "c-full")
	wantErr(t, "GetClient", err, nil)
	mustEqual(t, "GetClient", got, full)

	// Nil and empty string slices stay distinct; nil byte slices stay empty.
	bare := &storage.Client{ID: "c-bare", Name: "Bare", AuthMethod: "none", GrantTypes: []string{},
		CreatedAt: base.Add(-time.Hour)}
	wantErr(t, "CreateClient bare", s.CreateClient(ctx, bare), nil)
	got, err = s.GetClient(ctx, "c-bare")
	wantErr(t, "GetClient bare", err, nil)
	mustEqual(t, "GetClient bare", got, bare)
	if got.RedirectURIs != nil || got.GrantTypes == nil || len(got.SecretHash) != 0 {
		t.Fatalf("bare client slices: redirect %#v grant %#v secret %#v", got.RedirectURIs, got.GrantTypes, got.SecretHash)
	}

	wantErr(t, "CreateClient same id", s.CreateClient(ctx, newClient("c-full")), storage.ErrConflict)

	// A lookup on behalf of a request that has ended fails and returns
	// nothing (a store may skip watching a live context during a lookup).
	done, cancel := context.WithCancel(ctx)
	cancel()
	if got, err := s.GetClient(done, "c-full"); !errors.Is(err, context.Canceled) || got != nil {
		t.Fatalf("GetClient with a cancelled context: %+v, %v", got, err)
	}
	live, stop := context.WithCancel(ctx)
	defer stop()
	if got, err := s.GetClient(live, "c-full"); err != nil || got.ID != "c-full" {
		t.Fatalf("GetClient with a live cancellable context: %+v, %v", got, err)
	}
	list, err := s.ListClients(ctx)
	wantErr(t, "ListClients", err, nil)
	mustEqual(t, "ListClients (by CreatedAt)", list, []storage.Client{*bare, *full})

	wantErr(t, "DeleteClient", s.DeleteClient(ctx, "c-bare"), nil)
	_, err = s.GetClient(ctx, "c-bare")
	wantErr(t, "GetClient deleted", err, storage.ErrNotFound)
}

func testUpdateClient(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	_, err := s.UpdateClient(ctx, "nope", func(*storage.Client) error { return nil })
	wantErr(t, "UpdateClient unknown", err, storage.ErrNotFound)

	c := newClient("c1")
	wantErr(t, "CreateClient", s.CreateClient(ctx, c), nil)
	updated, err := s.UpdateClient(ctx, "c1", func(c *storage.Client) error {
		c.ID = "c-renamed" // ignored: the key cannot change
		c.Name = "Renamed"
		c.RedirectURIs = append(c.RedirectURIs, "https://app.example/cb2")
		c.SecretHash = nil
		c.UpdatedAt = base.Add(time.Hour)
		return nil
	})
	wantErr(t, "UpdateClient", err, nil)
	want := *c
	want.Name = "Renamed"
	want.RedirectURIs = []string{"https://app.example/cb", "http://127.0.0.1/cb", "https://app.example/cb2"}
	want.SecretHash = nil
	want.UpdatedAt = base.Add(time.Hour)
	mustEqual(t, "UpdateClient result", updated, &want)
	got, err := s.GetClient(ctx, "c1")
	wantErr(t, "GetClient", err, nil)
	mustEqual(t, "GetClient after update", got, &want)
	_, err = s.GetClient(ctx, "c-renamed")
	wantErr(t, "GetClient renamed", err, storage.ErrNotFound)

	// An update error aborts the write, even after the closure changed the record.
	_, err = s.UpdateClient(ctx, "c1", func(c *storage.Client) error {
		c.Name = "Should not stick"
		c.Disabled = true
		return fmt.Errorf("validate: %w", errUpdate)
	})
	if !errors.Is(err, errUpdate) {
		t.Fatalf("UpdateClient with failing update: got %v, want %v", err, errUpdate)
	}
	got, err = s.GetClient(ctx, "c1")
	wantErr(t, "GetClient", err, nil)
	mustEqual(t, "GetClient after aborted update", got, &want)

	// Read-modify-write is one transaction: concurrent updates lose nothing.
	errs := race(Racers/2, func(i int) error {
		_, err := s.UpdateClient(ctx, "c1", func(c *storage.Client) error {
			c.RedirectURIs = append(c.RedirectURIs, label("https://app.example/r", i))
			return nil
		})
		return err
	})
	for _, err := range errs {
		wantErr(t, "concurrent UpdateClient", err, nil)
	}
	got, err = s.GetClient(ctx, "c1")
	wantErr(t, "GetClient", err, nil)
	if n := len(got.RedirectURIs); n != 3+Racers/2 {
		t.Fatalf("after %d concurrent appends: %d redirect URIs, want %d", Racers/2, n, 3+Racers/2)
	}
}
