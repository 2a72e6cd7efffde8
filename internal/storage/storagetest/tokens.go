package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

func newFamily(id, userID, clientID string) *storage.TokenFamily {
	return &storage.TokenFamily{
		ID:             id,
		ClientID:       clientID,
		UserID:         userID,
		Scope:          "openid offline_access patient/*.rs",
		Context:        launchContext("123"),
		CreatedAt:      base,
		ExpiresAt:      base.Add(90 * 24 * time.Hour),
		DPoPJKT:        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		CertThumbprint: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2",
		SessionHash:    hash("session-" + id),
	}
}

func newRefresh(label, familyID string) *storage.RefreshToken {
	return &storage.RefreshToken{
		Hash:      hash(label),
		FamilyID:  familyID,
		ClientID:  "c1",
		UserID:    "u1",
		Scope:     "openid offline_access patient/*.rs",
		CreatedAt: base,
		ExpiresAt: base.Add(30 * 24 * time.Hour),
	}
}

func familyRevoked(t *testing.T, s storage.Store, id string) *storage.TokenFamily {
	t.Helper()
	f, err := s.GetFamily(context.Background(), id)
	wantErr(t, "GetFamily", err, nil)
	if f.RevokedAt.IsZero() {
		t.Fatalf("family %s is not revoked", id)
	}
	return f
}

func testFamilies(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Hour)
	_, err := s.GetFamily(ctx, "nope")
	wantErr(t, "GetFamily unknown", err, storage.ErrNotFound)
	wantErr(t, "RevokeFamily unknown", s.RevokeFamily(ctx, "nope", now, "test"), storage.ErrNotFound)

	f := newFamily("f1", "u1", "c1")
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, f), nil)
	wantErr(t, "CreateFamily same id", s.CreateFamily(ctx, newFamily("f1", "u1", "c1")), storage.ErrConflict)
	got, err := s.GetFamily(ctx, "f1")
	wantErr(t, "GetFamily", err, nil)
	mustEqual(t, "GetFamily", got, f)

	wantErr(t, "RevokeFamily", s.RevokeFamily(ctx, "f1", now, "code reuse"), nil)
	wantErr(t, "RevokeFamily again", s.RevokeFamily(ctx, "f1", now.Add(time.Hour), "logout"), nil)
	got = familyRevoked(t, s, "f1")
	want := *f
	want.RevokedAt, want.Reason = now, "code reuse"
	mustEqual(t, "GetFamily revoked (first revocation kept)", got, &want)

	// RevokeFamiliesFor touches only that user's families with that client.
	for _, nf := range []*storage.TokenFamily{
		newFamily("f-a", "u1", "c1"), newFamily("f-b", "u1", "c1"),
		newFamily("f-other-client", "u1", "c2"), newFamily("f-other-user", "u2", "c1"),
	} {
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, nf), nil)
	}
	wantErr(t, "RevokeFamiliesFor", s.RevokeFamiliesFor(ctx, "u1", "c1", now.Add(2*time.Hour), "consent revoked"), nil)
	for _, id := range []string{"f-a", "f-b"} {
		if got := familyRevoked(t, s, id); got.Reason != "consent revoked" {
			t.Fatalf("family %s reason %q", id, got.Reason)
		}
	}
	if got := familyRevoked(t, s, "f1"); got.Reason != "code reuse" {
		t.Fatalf("RevokeFamiliesFor overwrote an earlier revocation: %q", got.Reason)
	}
	for _, id := range []string{"f-other-client", "f-other-user"} {
		got, err := s.GetFamily(ctx, id)
		wantErr(t, "GetFamily", err, nil)
		if !got.RevokedAt.IsZero() {
			t.Fatalf("RevokeFamiliesFor revoked unrelated family %s", id)
		}
	}
	wantErr(t, "RevokeFamiliesFor with nothing to revoke", s.RevokeFamiliesFor(ctx, "u9", "c9", now, "x"), nil)

	// RevokeClientFamilies revokes every user's families of that client only.
	for _, nf := range []*storage.TokenFamily{
		newFamily("f-cd-1", "u1", "c-disabled"), newFamily("f-cd-2", "u2", "c-disabled"), newFamily("f-cd-keep", "u1", "c-kept"),
	} {
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, nf), nil)
	}
	wantErr(t, "RevokeClientFamilies", s.RevokeClientFamilies(ctx, "c-disabled", now.Add(3*time.Hour), "client disabled"), nil)
	for _, id := range []string{"f-cd-1", "f-cd-2"} {
		if got := familyRevoked(t, s, id); got.Reason != "client disabled" {
			t.Fatalf("family %s reason %q", id, got.Reason)
		}
	}
	if got, err := s.GetFamily(ctx, "f-cd-keep"); err != nil || !got.RevokedAt.IsZero() {
		t.Fatalf("RevokeClientFamilies revoked another client's family: %v %v", got, err)
	}
	wantErr(t, "RevokeClientFamilies with nothing to revoke", s.RevokeClientFamilies(ctx, "c9", now, "x"), nil)

	// RevokeUserFamilies revokes every client's families of that user only.
	for _, nf := range []*storage.TokenFamily{
		newFamily("f-ul-1", "u-locked", "c1"), newFamily("f-ul-2", "u-locked", "c2"), newFamily("f-ul-keep", "u-other", "c1"),
	} {
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, nf), nil)
	}
	wantErr(t, "RevokeUserFamilies", s.RevokeUserFamilies(ctx, "u-locked", now.Add(4*time.Hour), "account locked"), nil)
	for _, id := range []string{"f-ul-1", "f-ul-2"} {
		if got := familyRevoked(t, s, id); got.Reason != "account locked" {
			t.Fatalf("family %s reason %q", id, got.Reason)
		}
	}
	if got, err := s.GetFamily(ctx, "f-ul-keep"); err != nil || !got.RevokedAt.IsZero() {
		t.Fatalf("RevokeUserFamilies revoked another user's family: %v %v", got, err)
	}
	wantErr(t, "RevokeUserFamilies with nothing to revoke", s.RevokeUserFamilies(ctx, "u9", now, "x"), nil)
}

func testRefreshTokens(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Hour)
	wantErr(t, "CreateRefreshToken unknown family", s.CreateRefreshToken(ctx, newRefresh("rt-x", "nope")), storage.ErrNotFound)
	_, err := s.GetRefreshToken(ctx, hash("nope"))
	wantErr(t, "GetRefreshToken unknown", err, storage.ErrNotFound)
	_, err = s.RotateRefreshToken(ctx, hash("nope"), newRefresh("rt-y", "f1"), now, 0)
	wantErr(t, "RotateRefreshToken unknown", err, storage.ErrNotFound)

	wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily("f1", "u1", "c1")), nil)
	rt1 := newRefresh("rt-1", "f1")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt1), nil)
	wantErr(t, "CreateRefreshToken same hash", s.CreateRefreshToken(ctx, newRefresh("rt-1", "f1")), storage.ErrConflict)
	got, err := s.GetRefreshToken(ctx, rt1.Hash)
	wantErr(t, "GetRefreshToken", err, nil)
	mustEqual(t, "GetRefreshToken", got, rt1)
	// GetRefreshGrant: the token with its family and its user, in one read;
	// no user once none has the token's UserID.
	u1 := newUser("u1", "refresh-holder")
	wantErr(t, "CreateUser", s.CreateUser(ctx, u1), nil)
	gt, gf, gu, err := s.GetRefreshGrant(ctx, rt1.Hash)
	wantErr(t, "GetRefreshGrant", err, nil)
	mustEqual(t, "GetRefreshGrant token", gt, rt1)
	mustEqual(t, "GetRefreshGrant family", gf, newFamily("f1", "u1", "c1"))
	mustEqual(t, "GetRefreshGrant user", gu, u1)
	wantErr(t, "DeleteUser", s.DeleteUser(ctx, u1.ID), nil)
	gt, _, gu, err = s.GetRefreshGrant(ctx, rt1.Hash)
	wantErr(t, "GetRefreshGrant without its user", err, nil)
	if gt == nil || gu != nil {
		t.Fatalf("GetRefreshGrant without its user: token %v, user %+v", gt, gu)
	}
	_, _, _, err = s.GetRefreshGrant(ctx, hash("nope"))
	wantErr(t, "GetRefreshGrant unknown", err, storage.ErrNotFound)

	// next must belong to the same family; a refused rotation changes nothing.
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily("f2", "u1", "c1")), nil)
	_, err = s.RotateRefreshToken(ctx, rt1.Hash, newRefresh("rt-alien", "f2"), now, 0)
	if err == nil {
		t.Fatal("RotateRefreshToken accepted a next token of another family")
	}
	got, err = s.GetRefreshToken(ctx, rt1.Hash)
	wantErr(t, "GetRefreshToken", err, nil)
	mustEqual(t, "token after refused rotation", got, rt1)
	_, err = s.GetRefreshToken(ctx, hash("rt-alien"))
	wantErr(t, "GetRefreshToken alien", err, storage.ErrNotFound)

	rt2 := newRefresh("rt-2", "f1")
	rt2.CreatedAt = now
	old, err := s.RotateRefreshToken(ctx, rt1.Hash, rt2, now, 0)
	wantErr(t, "RotateRefreshToken", err, nil)
	wantOld := *rt1
	wantOld.UsedAt = now
	wantOld.SuccessorHash = rt2.Hash
	mustEqual(t, "RotateRefreshToken old", old, &wantOld)
	got, err = s.GetRefreshToken(ctx, rt2.Hash)
	wantErr(t, "GetRefreshToken next", err, nil)
	mustEqual(t, "GetRefreshToken next", got, rt2)
	got, err = s.GetRefreshToken(ctx, rt1.Hash)
	wantErr(t, "GetRefreshToken rotated", err, nil)
	mustEqual(t, "GetRefreshToken rotated (UsedAt, SuccessorHash)", got, &wantOld)

	// Reuse of rt1: ErrAlreadyUsed, and the whole family (rt2 too) is revoked.
	old, err = s.RotateRefreshToken(ctx, rt1.Hash, newRefresh("rt-3", "f1"), now.Add(time.Minute), 0)
	wantErr(t, "RotateRefreshToken reuse", err, storage.ErrAlreadyUsed)
	if old == nil || old.FamilyID != "f1" {
		t.Fatalf("RotateRefreshToken reuse returned %+v, want the old token", old)
	}
	f := familyRevoked(t, s, "f1")
	if f.Reason == "" {
		t.Fatal("reuse revocation has no reason")
	}
	_, err = s.GetRefreshToken(ctx, hash("rt-3"))
	wantErr(t, "next token of a refused rotation", err, storage.ErrNotFound)
	_, err = s.RotateRefreshToken(ctx, rt2.Hash, newRefresh("rt-4", "f1"), now.Add(time.Minute), 0)
	wantErr(t, "RotateRefreshToken sibling after reuse", err, storage.ErrRevoked)
	_, err = s.RotateRefreshToken(ctx, rt1.Hash, newRefresh("rt-5", "f1"), now.Add(time.Minute), 0)
	wantErr(t, "RotateRefreshToken reuse again", err, storage.ErrAlreadyUsed)

	// Revoked family.
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily("f3", "u1", "c1")), nil)
	rt6 := newRefresh("rt-6", "f3")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt6), nil)
	wantErr(t, "RevokeFamily", s.RevokeFamily(ctx, "f3", now, "logout"), nil)
	_, err = s.RotateRefreshToken(ctx, rt6.Hash, newRefresh("rt-7", "f3"), now, 0)
	wantErr(t, "RotateRefreshToken revoked family", err, storage.ErrRevoked)
	if _, gf, _, err := s.GetRefreshGrant(ctx, rt6.Hash); err != nil || gf.RevokedAt.IsZero() || gf.Reason != "logout" {
		t.Fatalf("GetRefreshGrant of a revoked family: %+v, %v", gf, err)
	}
	got, err = s.GetRefreshToken(ctx, rt6.Hash)
	wantErr(t, "GetRefreshToken", err, nil)
	if !got.UsedAt.IsZero() {
		t.Fatal("a refused rotation marked the token used")
	}

	// Expiry of the token itself, and of its family.
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily("f4", "u1", "c1")), nil)
	rt8 := newRefresh("rt-8", "f4")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt8), nil)
	_, err = s.RotateRefreshToken(ctx, rt8.Hash, newRefresh("rt-9", "f4"), rt8.ExpiresAt, 0)
	wantErr(t, "RotateRefreshToken at token ExpiresAt", err, storage.ErrExpired)
	fam := newFamily("f5", "u1", "c1")
	fam.ExpiresAt = base.Add(time.Hour)
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, fam), nil)
	rt10 := newRefresh("rt-10", "f5")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt10), nil)
	_, err = s.RotateRefreshToken(ctx, rt10.Hash, newRefresh("rt-11", "f5"), fam.ExpiresAt, 0)
	wantErr(t, "RotateRefreshToken at family ExpiresAt", err, storage.ErrExpired)
	_, err = s.RotateRefreshToken(ctx, rt10.Hash, newRefresh("rt-11", "f5"), fam.ExpiresAt.Add(-time.Second), 0)
	wantErr(t, "RotateRefreshToken before family ExpiresAt", err, nil)
	_, err = s.RotateRefreshToken(ctx, hash("rt-11"), newRefresh("rt-12", "f5"), fam.ExpiresAt.Add(-time.Second), 0)
	wantErr(t, "RotateRefreshToken the rotated-to token", err, nil)

	// A next token whose hash is taken fails with ErrConflict and changes nothing.
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily("f6", "u1", "c1")), nil)
	rt13 := newRefresh("rt-13", "f6")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt13), nil)
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, newRefresh("rt-14", "f6")), nil)
	_, err = s.RotateRefreshToken(ctx, rt13.Hash, newRefresh("rt-14", "f6"), now, 0)
	wantErr(t, "RotateRefreshToken onto a taken hash", err, storage.ErrConflict)
	got, err = s.GetRefreshToken(ctx, rt13.Hash)
	wantErr(t, "GetRefreshToken", err, nil)
	if !got.UsedAt.IsZero() {
		t.Fatal("a failed rotation marked the token used")
	}
}

func testRotateRace(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Hour)
	for round := range 3 {
		fid := label("race-family", round)
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily(fid, "u1", "c1")), nil)
		rt := newRefresh(label("race-rt", round), fid)
		wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt), nil)
		errs := race(Racers, func(i int) error {
			_, err := s.RotateRefreshToken(ctx, rt.Hash, newRefresh(label(fid+"-next", i), fid), now, 0)
			return err
		})
		oneWinner(t, "RotateRefreshToken race", errs, storage.ErrAlreadyUsed)
		// The losers presented a rotated token: reuse, so the family ends revoked,
		// and the winner's new token no longer rotates.
		familyRevoked(t, s, fid)
		for i, err := range errs {
			if err != nil {
				continue
			}
			_, err := s.RotateRefreshToken(ctx, hash(label(fid+"-next", i)), newRefresh(fid+"-after", fid), now, 0)
			if !errors.Is(err, storage.ErrRevoked) {
				t.Fatalf("winner's token after reuse: got %v, want %v", err, storage.ErrRevoked)
			}
		}
	}
}
