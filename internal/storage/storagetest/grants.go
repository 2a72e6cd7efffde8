package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

func newLaunch(label string) *storage.Launch {
	return &storage.Launch{
		Hash:      hash(label),
		Context:   launchContext("123"),
		CreatedAt: base,
		ExpiresAt: base.Add(5 * time.Minute),
	}
}

func testLaunches(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Minute)
	_, err := s.ConsumeLaunch(ctx, hash("unknown"), now)
	wantErr(t, "ConsumeLaunch unknown", err, storage.ErrNotFound)

	l := newLaunch("launch-1")
	wantErr(t, "CreateLaunch", s.CreateLaunch(ctx, l), nil)
	wantErr(t, "CreateLaunch same hash", s.CreateLaunch(ctx, newLaunch("launch-1")), storage.ErrConflict)
	got, err := s.ConsumeLaunch(ctx, l.Hash, now)
	wantErr(t, "ConsumeLaunch", err, nil)
	want := *l
	want.UsedAt = now
	mustEqual(t, "ConsumeLaunch", got, &want)
	_, err = s.ConsumeLaunch(ctx, l.Hash, now)
	wantErr(t, "ConsumeLaunch again", err, storage.ErrAlreadyUsed)
	_, err = s.ConsumeLaunch(ctx, l.Hash, base.Add(time.Hour))
	wantErr(t, "ConsumeLaunch again after expiry", err, storage.ErrAlreadyUsed)

	// Expired exactly at ExpiresAt; an expired launch stays expired.
	exp := newLaunch("launch-2")
	wantErr(t, "CreateLaunch", s.CreateLaunch(ctx, exp), nil)
	_, err = s.ConsumeLaunch(ctx, exp.Hash, exp.ExpiresAt)
	wantErr(t, "ConsumeLaunch at ExpiresAt", err, storage.ErrExpired)
	_, err = s.ConsumeLaunch(ctx, exp.Hash, exp.ExpiresAt.Add(-time.Microsecond))
	wantErr(t, "ConsumeLaunch just before ExpiresAt", err, nil)

	// A launch created without a lifetime fails closed.
	noExp := newLaunch("launch-3")
	noExp.ExpiresAt = time.Time{}
	wantErr(t, "CreateLaunch", s.CreateLaunch(ctx, noExp), nil)
	_, err = s.ConsumeLaunch(ctx, noExp.Hash, now)
	wantErr(t, "ConsumeLaunch without ExpiresAt", err, storage.ErrExpired)
}

func testConsumeLaunchRace(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Minute)
	for round := range 3 {
		l := newLaunch(label("race-launch", round))
		wantErr(t, "CreateLaunch", s.CreateLaunch(ctx, l), nil)
		errs := race(Racers, func(int) error {
			_, err := s.ConsumeLaunch(ctx, l.Hash, now)
			return err
		})
		oneWinner(t, "ConsumeLaunch race", errs, storage.ErrAlreadyUsed)
	}
}

func newAuthRequest(id string) *storage.AuthRequest {
	lc := launchContext("456")
	return &storage.AuthRequest{
		ID:            id,
		ClientID:      "c1",
		RedirectURI:   "https://app.example/cb",
		State:         "st-" + id,
		Scope:         "openid launch patient/*.rs",
		Nonce:         "n-" + id,
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Audience:      "https://ehr.example/fhir",
		Launch:        &lc,
		ResponseMode:  "query",
		Prompt:        "login consent",
		DPoPJKT:       "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		Pushed:        true,
		CreatedAt:     base,
		ExpiresAt:     base.Add(10 * time.Minute),
	}
}

func testAuthRequests(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Minute)
	_, err := s.GetAuthRequest(ctx, "nope", now)
	wantErr(t, "GetAuthRequest unknown", err, storage.ErrNotFound)
	_, err = s.UpdateAuthRequest(ctx, "nope", func(*storage.AuthRequest) error { return nil })
	wantErr(t, "UpdateAuthRequest unknown", err, storage.ErrNotFound)
	wantErr(t, "DeleteAuthRequest unknown", s.DeleteAuthRequest(ctx, "nope"), nil)

	r := newAuthRequest("ar1")
	wantErr(t, "CreateAuthRequest", s.CreateAuthRequest(ctx, r), nil)
	wantErr(t, "CreateAuthRequest same id", s.CreateAuthRequest(ctx, newAuthRequest("ar1")), storage.ErrConflict)
	got, err := s.GetAuthRequest(ctx, "ar1", now)
	wantErr(t, "GetAuthRequest", err, nil)
	mustEqual(t, "GetAuthRequest", got, r)

	noLaunch := newAuthRequest("ar2")
	noLaunch.Launch = nil
	wantErr(t, "CreateAuthRequest", s.CreateAuthRequest(ctx, noLaunch), nil)
	got, err = s.GetAuthRequest(ctx, "ar2", now)
	wantErr(t, "GetAuthRequest", err, nil)
	if got.Launch != nil {
		t.Fatalf("nil Launch came back as %+v", got.Launch)
	}
	mustEqual(t, "GetAuthRequest without launch", got, noLaunch)

	_, err = s.GetAuthRequest(ctx, "ar1", r.ExpiresAt)
	wantErr(t, "GetAuthRequest at ExpiresAt", err, storage.ErrExpired)

	updated, err := s.UpdateAuthRequest(ctx, "ar1", func(r *storage.AuthRequest) error {
		r.ID = "other"
		r.UserID = "u1"
		r.Patient = "789"
		r.Launch = nil
		r.Prompt, r.DPoPJKT, r.Pushed = "", "", false
		return nil
	})
	wantErr(t, "UpdateAuthRequest", err, nil)
	want := *r
	want.UserID, want.Patient, want.Launch = "u1", "789", nil
	want.Prompt, want.DPoPJKT, want.Pushed = "", "", false
	mustEqual(t, "UpdateAuthRequest result", updated, &want)
	got, err = s.GetAuthRequest(ctx, "ar1", now)
	wantErr(t, "GetAuthRequest", err, nil)
	mustEqual(t, "GetAuthRequest after update", got, &want)

	_, err = s.UpdateAuthRequest(ctx, "ar1", func(r *storage.AuthRequest) error {
		r.UserID = "intruder"
		return errUpdate
	})
	if !errors.Is(err, errUpdate) {
		t.Fatalf("UpdateAuthRequest with failing update: got %v, want %v", err, errUpdate)
	}
	got, err = s.GetAuthRequest(ctx, "ar1", now)
	wantErr(t, "GetAuthRequest", err, nil)
	mustEqual(t, "GetAuthRequest after aborted update", got, &want)

	wantErr(t, "DeleteAuthRequest", s.DeleteAuthRequest(ctx, "ar1"), nil)
	_, err = s.GetAuthRequest(ctx, "ar1", now)
	wantErr(t, "GetAuthRequest deleted", err, storage.ErrNotFound)
}

func newAuthCode(label string) *storage.AuthCode {
	return &storage.AuthCode{
		Hash:          hash(label),
		ClientID:      "c1",
		RedirectURI:   "https://app.example/cb",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Scope:         "openid fhirUser launch/patient patient/*.rs",
		UserID:        "u1",
		Nonce:         "nonce-" + label,
		AuthTime:      base.Add(-time.Minute),
		Context:       launchContext("123"),
		FamilyID:      "fam-" + label,
		DPoPJKT:       "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		SessionHash:   hash("session-" + label),
		CreatedAt:     base,
		ExpiresAt:     base.Add(60 * time.Second),
	}
}

func testAuthCodes(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(10 * time.Second)
	_, err := s.ConsumeAuthCode(ctx, hash("unknown"), now)
	wantErr(t, "ConsumeAuthCode unknown", err, storage.ErrNotFound)

	c := newAuthCode("code-1")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, c), nil)
	wantErr(t, "CreateAuthCode same hash", s.CreateAuthCode(ctx, newAuthCode("code-1")), storage.ErrConflict)
	got, err := s.ConsumeAuthCode(ctx, c.Hash, now)
	wantErr(t, "ConsumeAuthCode", err, nil)
	want := *c
	want.UsedAt = now
	mustEqual(t, "ConsumeAuthCode", got, &want)

	// Replay: ErrAlreadyUsed, with the code so the caller can revoke its family.
	got, err = s.ConsumeAuthCode(ctx, c.Hash, now.Add(time.Second))
	wantErr(t, "ConsumeAuthCode replay", err, storage.ErrAlreadyUsed)
	if got == nil {
		t.Fatal("ConsumeAuthCode replay returned no code")
	}
	mustEqual(t, "ConsumeAuthCode replay record", got, &want)
	_, err = s.ConsumeAuthCode(ctx, c.Hash, c.ExpiresAt.Add(time.Hour))
	wantErr(t, "ConsumeAuthCode replay after expiry", err, storage.ErrAlreadyUsed)

	// Expired at ExpiresAt: reported with the code, and not marked used.
	exp := newAuthCode("code-2")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, exp), nil)
	got, err = s.ConsumeAuthCode(ctx, exp.Hash, exp.ExpiresAt)
	wantErr(t, "ConsumeAuthCode at ExpiresAt", err, storage.ErrExpired)
	if got == nil {
		t.Fatal("ConsumeAuthCode expired returned no code")
	}
	mustEqual(t, "ConsumeAuthCode expired record", got, exp)
	_, err = s.ConsumeAuthCode(ctx, exp.Hash, exp.ExpiresAt.Add(time.Second))
	wantErr(t, "ConsumeAuthCode expired again", err, storage.ErrExpired)
	got, err = s.ConsumeAuthCode(ctx, exp.Hash, exp.ExpiresAt.Add(-time.Microsecond))
	wantErr(t, "ConsumeAuthCode just before ExpiresAt", err, nil)
	if got.FamilyID != exp.FamilyID {
		t.Fatalf("FamilyID %q, want %q", got.FamilyID, exp.FamilyID)
	}

	noExp := newAuthCode("code-3")
	noExp.ExpiresAt = time.Time{}
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, noExp), nil)
	_, err = s.ConsumeAuthCode(ctx, noExp.Hash, now)
	wantErr(t, "ConsumeAuthCode without ExpiresAt", err, storage.ErrExpired)
}

func testConsumeAuthCodeRace(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Second)
	for round := range 3 {
		c := newAuthCode(label("race-code", round))
		wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, c), nil)
		errs := race(Racers, func(int) error {
			got, err := s.ConsumeAuthCode(ctx, c.Hash, now)
			if err == nil && (got == nil || got.UsedAt.IsZero()) {
				return errors.New("winner got no used code")
			}
			if errors.Is(err, storage.ErrAlreadyUsed) && (got == nil || got.FamilyID != c.FamilyID) {
				return errors.New("loser got no code to revoke")
			}
			return err
		})
		oneWinner(t, "ConsumeAuthCode race", errs, storage.ErrAlreadyUsed)
	}
}

// redeem is RedeemAuthCode waiting for durable when the store returned one:
// the redemption as committed.
func redeem(ctx context.Context, s storage.AuthCodes, hash []byte, now time.Time,
	exchange func(*storage.AuthCode, *storage.User) (*storage.Redemption, error)) (*storage.AuthCode, error) {
	c, durable, err := s.RedeemAuthCode(ctx, hash, now, exchange)
	if err != nil && durable != nil {
		return c, fmt.Errorf("RedeemAuthCode returned durable with the error %w", err)
	}
	if durable != nil {
		err = durable()
	}
	return c, err
}

func testRedeemAuthCode(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(10 * time.Second)
	redemption := func(c *storage.AuthCode, _ *storage.User) (*storage.Redemption, error) {
		f := newFamily(c.FamilyID, c.UserID, c.ClientID)
		rt := newRefresh("rt-"+c.FamilyID, c.FamilyID)
		return &storage.Redemption{Family: f, Refresh: rt}, nil
	}

	// Success: code consumed, family and refresh token written together.
	c := newAuthCode("redeem-1")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, c), nil)
	got, err := redeem(ctx, s, c.Hash, now, redemption)
	wantErr(t, "RedeemAuthCode", err, nil)
	if got.UsedAt.IsZero() || got.FamilyID != c.FamilyID {
		t.Fatalf("RedeemAuthCode returned %+v", got)
	}
	if _, err := s.GetFamily(ctx, c.FamilyID); err != nil {
		t.Fatalf("family not written: %v", err)
	}
	if _, err := s.GetRefreshToken(ctx, hash("rt-"+c.FamilyID)); err != nil {
		t.Fatalf("refresh token not written: %v", err)
	}
	// Without a refresh token: the family alone is written with the consumption.
	single := newAuthCode("redeem-family-only")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, single), nil)
	_, err = redeem(ctx, s, single.Hash, now, func(c *storage.AuthCode, _ *storage.User) (*storage.Redemption, error) {
		return &storage.Redemption{Family: newFamily(c.FamilyID, c.UserID, c.ClientID)}, nil
	})
	wantErr(t, "RedeemAuthCode without refresh token", err, nil)
	if f, err := s.GetFamily(ctx, single.FamilyID); err != nil || f.UserID != single.UserID {
		t.Fatalf("family of a redemption without refresh token: %+v, %v", f, err)
	}
	_, err = s.ConsumeAuthCode(ctx, single.Hash, now)
	wantErr(t, "code after its redemption", err, storage.ErrAlreadyUsed)

	// Reuse: reported with the code, exchange not called, the family exists to revoke.
	called := false
	got, err = redeem(ctx, s, c.Hash, now, func(*storage.AuthCode, *storage.User) (*storage.Redemption, error) {
		called = true
		return nil, nil
	})
	wantErr(t, "RedeemAuthCode reuse", err, storage.ErrAlreadyUsed)
	if called || got == nil || got.FamilyID != c.FamilyID {
		t.Fatalf("reuse: exchange called %v, code %+v", called, got)
	}

	// A failing exchange burns the code and writes nothing else.
	failing := newAuthCode("redeem-2")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, failing), nil)
	errPKCE := errors.New("pkce mismatch")
	_, err = redeem(ctx, s, failing.Hash, now, func(*storage.AuthCode, *storage.User) (*storage.Redemption, error) {
		return nil, errPKCE
	})
	wantErr(t, "RedeemAuthCode failing exchange", err, errPKCE)
	_, err = s.GetFamily(ctx, failing.FamilyID)
	wantErr(t, "family after failed exchange", err, storage.ErrNotFound)
	_, err = redeem(ctx, s, failing.Hash, now, redemption)
	wantErr(t, "RedeemAuthCode after failed exchange", err, storage.ErrAlreadyUsed)

	// A redemption for another family is refused and writes nothing.
	wrong := newAuthCode("redeem-3")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, wrong), nil)
	_, err = redeem(ctx, s, wrong.Hash, now, func(c *storage.AuthCode, _ *storage.User) (*storage.Redemption, error) {
		return &storage.Redemption{Family: newFamily("someone-else", c.UserID, c.ClientID)}, nil
	})
	wantErr(t, "RedeemAuthCode wrong family", err, storage.ErrBadRedemption)
	_, err = s.GetFamily(ctx, "someone-else")
	wantErr(t, "foreign family", err, storage.ErrNotFound)

	// A write that fails (here, a family that already exists) takes the
	// consumption with it: the code stays unused and nothing else is written.
	clash := newAuthCode("redeem-5")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, clash), nil)
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily(clash.FamilyID, "someone", "another-client")), nil)
	_, err = redeem(ctx, s, clash.Hash, now, redemption)
	wantErr(t, "RedeemAuthCode family clash", err, storage.ErrConflict)
	_, err = s.GetRefreshToken(ctx, hash("rt-"+clash.FamilyID))
	wantErr(t, "refresh token after family clash", err, storage.ErrNotFound)
	if _, err := s.ConsumeAuthCode(ctx, clash.Hash, now); err != nil {
		t.Fatalf("code after a redemption whose write failed: %v, want it still unused", err)
	}

	// Expired: not consumed, exchange not called.
	exp := newAuthCode("redeem-4")
	wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, exp), nil)
	_, err = redeem(ctx, s, exp.Hash, exp.ExpiresAt, redemption)
	wantErr(t, "RedeemAuthCode expired", err, storage.ErrExpired)
	_, err = s.GetFamily(ctx, exp.FamilyID)
	wantErr(t, "family of expired code", err, storage.ErrNotFound)

	// Concurrent redemption: exactly one caller redeems the code and one
	// family is written. A store may run exchange before it knows who wins
	// (PostgreSQL does), so exchange may run for losers too, at most once each.
	for round := range 3 {
		rc := newAuthCode(label("redeem-race", round))
		wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, rc), nil)
		var calls atomic.Int32
		errs := race(Racers, func(int) error {
			_, err := redeem(ctx, s, rc.Hash, now, func(c *storage.AuthCode, _ *storage.User) (*storage.Redemption, error) {
				calls.Add(1)
				return redemption(c, nil)
			})
			return err
		})
		oneWinner(t, "RedeemAuthCode race", errs, storage.ErrAlreadyUsed)
		if n := calls.Load(); n < 1 || n > Racers {
			t.Fatalf("exchange ran %d times for %d racers", n, Racers)
		}
		if _, err := s.GetFamily(ctx, rc.FamilyID); err != nil {
			t.Fatalf("RedeemAuthCode race: the winner's family: %v", err)
		}
	}

	// exchange gets the code's user as the store holds it, and nil once no
	// user has that ID: the caller decides before anything is issued.
	holder := newUser("u-redeem", "redeemer")
	wantErr(t, "CreateUser", s.CreateUser(ctx, holder), nil)
	var seen []*storage.User
	record := func(c *storage.AuthCode, u *storage.User) (*storage.Redemption, error) {
		seen = append(seen, u)
		return redemption(c, u)
	}
	for i, present := range []bool{true, false} {
		if !present {
			wantErr(t, "DeleteUser", s.DeleteUser(ctx, holder.ID), nil)
		}
		uc := newAuthCode(label("redeem-user", i))
		uc.UserID = holder.ID
		wantErr(t, "CreateAuthCode", s.CreateAuthCode(ctx, uc), nil)
		_, err := redeem(ctx, s, uc.Hash, now, record)
		wantErr(t, "RedeemAuthCode with its user", err, nil)
	}
	if len(seen) != 2 {
		t.Fatalf("exchange ran %d times, want 2", len(seen))
	}
	if u := seen[0]; u == nil || u.ID != holder.ID || u.Username != holder.Username || u.FHIRUser != holder.FHIRUser || u.Role != holder.Role {
		t.Errorf("exchange got user %+v, want %+v", u, holder)
	}
	if seen[1] != nil {
		t.Errorf("exchange got %+v for a deleted user, want nil", seen[1])
	}
}
