package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

func testSessions(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Minute)
	_, err := s.GetSession(ctx, hash("nope"), now)
	wantErr(t, "GetSession unknown", err, storage.ErrNotFound)
	wantErr(t, "TouchSession unknown", s.TouchSession(ctx, hash("nope"), now), storage.ErrNotFound)
	wantErr(t, "DeleteSession unknown", s.DeleteSession(ctx, hash("nope")), nil)

	sess := &storage.Session{
		Hash:      hash("session-1"),
		UserID:    "u1",
		CSRFToken: "csrf-secret",
		AuthTime:  base,
		CreatedAt: base,
		LastSeen:  base,
		ExpiresAt: base.Add(8 * time.Hour),
	}
	wantErr(t, "CreateSession", s.CreateSession(ctx, sess), nil)
	wantErr(t, "CreateSession same hash", s.CreateSession(ctx, sess), storage.ErrConflict)
	got, err := s.GetSession(ctx, sess.Hash, now)
	wantErr(t, "GetSession", err, nil)
	mustEqual(t, "GetSession", got, sess)

	wantErr(t, "TouchSession", s.TouchSession(ctx, sess.Hash, now), nil)
	got, err = s.GetSession(ctx, sess.Hash, now)
	wantErr(t, "GetSession", err, nil)
	want := *sess
	want.LastSeen = now
	mustEqual(t, "GetSession after touch", got, &want)

	_, err = s.GetSession(ctx, sess.Hash, sess.ExpiresAt)
	wantErr(t, "GetSession at ExpiresAt", err, storage.ErrExpired)

	wantErr(t, "DeleteSession", s.DeleteSession(ctx, sess.Hash), nil)
	_, err = s.GetSession(ctx, sess.Hash, now)
	wantErr(t, "GetSession deleted", err, storage.ErrNotFound)

	// DeleteUserSessions ends every session of one user, and only theirs.
	for i, u := range []string{"u-lock", "u-lock", "u-other"} {
		o := *sess
		o.Hash, o.UserID = hash(fmt.Sprintf("user-session-%d", i)), u
		wantErr(t, "CreateSession", s.CreateSession(ctx, &o), nil)
	}
	wantErr(t, "DeleteUserSessions none", s.DeleteUserSessions(ctx, "u-nobody"), nil)
	wantErr(t, "DeleteUserSessions", s.DeleteUserSessions(ctx, "u-lock"), nil)
	for i, want := range []error{storage.ErrNotFound, storage.ErrNotFound, nil} {
		_, err = s.GetSession(ctx, hash(fmt.Sprintf("user-session-%d", i)), now)
		wantErr(t, fmt.Sprintf("GetSession user-session-%d after DeleteUserSessions", i), err, want)
	}
}

func testConsents(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	_, err := s.GetConsent(ctx, "u1", "c1")
	wantErr(t, "GetConsent unknown", err, storage.ErrNotFound)
	wantErr(t, "DeleteConsent unknown", s.DeleteConsent(ctx, "u1", "c1"), nil)

	c := &storage.Consent{UserID: "u1", ClientID: "c1", Scope: "openid patient/*.rs", CreatedAt: base, UpdatedAt: base}
	wantErr(t, "PutConsent", s.PutConsent(ctx, c), nil)
	other := &storage.Consent{UserID: "u1", ClientID: "c2", Scope: "openid", CreatedAt: base, UpdatedAt: base}
	wantErr(t, "PutConsent other client", s.PutConsent(ctx, other), nil)
	got, err := s.GetConsent(ctx, "u1", "c1")
	wantErr(t, "GetConsent", err, nil)
	mustEqual(t, "GetConsent", got, c)

	replaced := &storage.Consent{UserID: "u1", ClientID: "c1", Scope: "openid", CreatedAt: base, UpdatedAt: base.Add(time.Hour)}
	wantErr(t, "PutConsent replace", s.PutConsent(ctx, replaced), nil)
	got, err = s.GetConsent(ctx, "u1", "c1")
	wantErr(t, "GetConsent", err, nil)
	mustEqual(t, "GetConsent after replace", got, replaced)

	wantErr(t, "DeleteConsent", s.DeleteConsent(ctx, "u1", "c1"), nil)
	_, err = s.GetConsent(ctx, "u1", "c1")
	wantErr(t, "GetConsent deleted", err, storage.ErrNotFound)
	got, err = s.GetConsent(ctx, "u1", "c2")
	wantErr(t, "GetConsent other client survives", err, nil)
	mustEqual(t, "GetConsent other client", got, other)
}
