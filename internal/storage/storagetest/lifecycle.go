package storagetest

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// liveRefreshTokens counts the refresh tokens that would still rotate at
// now: unused, unexpired, in an unrevoked, unexpired family.
func liveRefreshTokens(t *testing.T, s storage.Store, familyID string, hashes [][]byte, now time.Time) int {
	t.Helper()
	ctx := context.Background()
	f, err := s.GetFamily(ctx, familyID)
	wantErr(t, "GetFamily", err, nil)
	if !f.RevokedAt.IsZero() || !now.Before(f.ExpiresAt) {
		return 0
	}
	n := 0
	for _, h := range hashes {
		rt, err := s.GetRefreshToken(ctx, h)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		wantErr(t, "GetRefreshToken", err, nil)
		if rt.UsedAt.IsZero() && now.Before(rt.ExpiresAt) {
			n++
		}
	}
	return n
}

func testRotateRetryWindow(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Hour)
	const window = 10 * time.Second
	setup := func(fid string) *storage.RefreshToken {
		t.Helper()
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily(fid, "u1", "c1")), nil)
		rt := newRefresh(fid+"-rt0", fid)
		wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt), nil)
		return rt
	}

	// Within the window, while the successor is unused: the old token rotates
	// again and the unused successor is invalidated.
	rt0 := setup("w1")
	_, err := s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w1-rt1", "w1"), now, window)
	wantErr(t, "first rotation", err, nil)
	got, err := s.GetRefreshToken(ctx, rt0.Hash)
	wantErr(t, "GetRefreshToken", err, nil)
	mustEqual(t, "successor recorded", got.SuccessorHash, hash("w1-rt1"))
	old, err := s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w1-rt2", "w1"), now.Add(window-time.Microsecond), window)
	wantErr(t, "retry within the window", err, nil)
	if old == nil || !old.UsedAt.Equal(now.Truncate(Precision)) {
		t.Fatalf("retry returned %+v; want the old token with its first rotation time", old)
	}
	mustEqual(t, "retry successor", old.SuccessorHash, hash("w1-rt2"))
	rt1, err := s.GetRefreshToken(ctx, hash("w1-rt1"))
	wantErr(t, "GetRefreshToken invalidated successor", err, nil)
	if rt1.UsedAt.IsZero() {
		t.Fatal("the unused successor was not invalidated by the retry")
	}
	if n := liveRefreshTokens(t, s, "w1", [][]byte{rt0.Hash, hash("w1-rt1"), hash("w1-rt2")}, now); n != 1 {
		t.Fatalf("%d live refresh tokens after a retry, want 1", n)
	}
	// The invalidated successor presented later is reuse: the family goes.
	_, err = s.RotateRefreshToken(ctx, hash("w1-rt1"), newRefresh("w1-rt3", "w1"), now.Add(time.Second), window)
	wantErr(t, "invalidated successor presented", err, storage.ErrAlreadyUsed)
	familyRevoked(t, s, "w1")

	// At the window's end it is reuse.
	rt0 = setup("w2")
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w2-rt1", "w2"), now, window)
	wantErr(t, "rotation", err, nil)
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w2-rt2", "w2"), now.Add(window), window)
	wantErr(t, "retry at the window's end", err, storage.ErrAlreadyUsed)
	familyRevoked(t, s, "w2")
	_, err = s.GetRefreshToken(ctx, hash("w2-rt2"))
	wantErr(t, "no token from a refused retry", err, storage.ErrNotFound)

	// Once the successor was used, it is reuse even within the window.
	rt0 = setup("w3")
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w3-rt1", "w3"), now, window)
	wantErr(t, "rotation", err, nil)
	_, err = s.RotateRefreshToken(ctx, hash("w3-rt1"), newRefresh("w3-rt2", "w3"), now.Add(time.Second), window)
	wantErr(t, "successor rotation", err, nil)
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w3-rt3", "w3"), now.Add(2*time.Second), window)
	wantErr(t, "retry after the successor was used", err, storage.ErrAlreadyUsed)
	familyRevoked(t, s, "w3")
	_, err = s.RotateRefreshToken(ctx, hash("w3-rt2"), newRefresh("w3-rt4", "w3"), now.Add(3*time.Second), window)
	wantErr(t, "newest token after reuse", err, storage.ErrRevoked)

	// Window 0: any second presentation is reuse.
	rt0 = setup("w4")
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w4-rt1", "w4"), now, 0)
	wantErr(t, "rotation", err, nil)
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w4-rt2", "w4"), now, 0)
	wantErr(t, "second presentation with window 0", err, storage.ErrAlreadyUsed)
	familyRevoked(t, s, "w4")

	// A revoked family never retries.
	rt0 = setup("w5")
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w5-rt1", "w5"), now, window)
	wantErr(t, "rotation", err, nil)
	wantErr(t, "RevokeFamily", s.RevokeFamily(ctx, "w5", now, "logout"), nil)
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w5-rt2", "w5"), now.Add(time.Second), window)
	if err == nil {
		t.Fatal("retry on a revoked family succeeded")
	}
	_, err = s.GetRefreshToken(ctx, hash("w5-rt2"))
	wantErr(t, "no token from a retry on a revoked family", err, storage.ErrNotFound)

	// A retry cannot outlive the family.
	fam := newFamily("w6", "u1", "c1")
	fam.ExpiresAt = now.Add(time.Second)
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, fam), nil)
	rt0 = newRefresh("w6-rt0", "w6")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt0), nil)
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w6-rt1", "w6"), now, window)
	wantErr(t, "rotation", err, nil)
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w6-rt2", "w6"), fam.ExpiresAt, window)
	wantErr(t, "retry after the family ended", err, storage.ErrExpired)

	// A retry's next token must belong to the family.
	rt0 = setup("w7")
	_, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w7-rt1", "w7"), now, window)
	wantErr(t, "rotation", err, nil)
	if _, err = s.RotateRefreshToken(ctx, rt0.Hash, newRefresh("w7-alien", "w1"), now, window); err == nil {
		t.Fatal("retry accepted a next token of another family")
	}
	rt1, err = s.GetRefreshToken(ctx, hash("w7-rt1"))
	wantErr(t, "GetRefreshToken", err, nil)
	if !rt1.UsedAt.IsZero() {
		t.Fatal("a refused retry invalidated the successor")
	}
}

// testRotateRetryRace: with a retry window, concurrent presentations of one
// token all rotate in turn, and exactly one refresh token is left valid.
func testRotateRetryRace(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Hour)
	for round := range 2 {
		fid := label("retry-race", round)
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily(fid, "u1", "c1")), nil)
		rt := newRefresh(fid+"-rt", fid)
		wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt), nil)
		hashes := [][]byte{rt.Hash}
		for i := range Racers {
			hashes = append(hashes, hash(label(fid+"-next", i)))
		}
		errs := race(Racers, func(i int) error {
			_, err := s.RotateRefreshToken(ctx, rt.Hash, newRefresh(label(fid+"-next", i), fid), now, time.Minute)
			return err
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("racer %d: %v", i, err)
			}
		}
		if n := liveRefreshTokens(t, s, fid, hashes, now); n != 1 {
			t.Fatalf("%d valid refresh tokens after %d concurrent retries, want 1", n, Racers)
		}
	}
}

func testRevocationList(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	t0 := base.Add(time.Hour)

	ok, err := s.IsRevoked(ctx, "j-none", "f-none", t0)
	wantErr(t, "IsRevoked unknown", err, nil)
	if ok {
		t.Fatal("unknown jti and family reported revoked")
	}
	list, err := s.RevokedSince(ctx, time.Time{}, t0)
	wantErr(t, "RevokedSince empty", err, nil)
	if len(list) != 0 {
		t.Fatalf("RevokedSince on an empty store: %+v", list)
	}

	// Access tokens by jti.
	wantErr(t, "RevokeAccessToken", s.RevokeAccessToken(ctx, "j1", t0.Add(15*time.Minute), t0), nil)
	wantErr(t, "RevokeAccessToken again", s.RevokeAccessToken(ctx, "j1", t0.Add(15*time.Minute), t0.Add(time.Second)), nil)
	for _, c := range []struct {
		jti, fam string
		want     bool
	}{{"j1", "", true}, {"j1", "f-live", true}, {"j2", "", false}, {"", "j1", false}} {
		ok, err := s.IsRevoked(ctx, c.jti, c.fam, t0)
		wantErr(t, "IsRevoked", err, nil)
		if ok != c.want {
			t.Fatalf("IsRevoked(%q, %q) = %v, want %v", c.jti, c.fam, ok, c.want)
		}
	}

	// Families: revoked by RevokeFamily, RevokeFamiliesFor and reuse.
	for _, id := range []string{"f1", "f2", "f3", "f-live"} {
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily(id, "u1", "c-"+id)), nil)
	}
	t1 := t0.Add(time.Minute)
	wantErr(t, "RevokeFamily", s.RevokeFamily(ctx, "f1", t1, "logout"), nil)
	t2 := t1.Add(time.Minute)
	wantErr(t, "RevokeFamiliesFor", s.RevokeFamiliesFor(ctx, "u1", "c-f2", t2, "consent revoked"), nil)
	rt := newRefresh("rl-rt0", "f3")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt), nil)
	_, err = s.RotateRefreshToken(ctx, rt.Hash, newRefresh("rl-rt1", "f3"), t2, 0)
	wantErr(t, "RotateRefreshToken", err, nil)
	t3 := t2.Add(time.Minute)
	_, err = s.RotateRefreshToken(ctx, rt.Hash, newRefresh("rl-rt2", "f3"), t3, 0)
	wantErr(t, "RotateRefreshToken reuse", err, storage.ErrAlreadyUsed)
	for _, id := range []string{"f1", "f2", "f3"} {
		ok, err := s.IsRevoked(ctx, "j-other", id, t3)
		wantErr(t, "IsRevoked family", err, nil)
		if !ok {
			t.Fatalf("family %s not reported revoked", id)
		}
	}
	if ok, err := s.IsRevoked(ctx, "j-other", "f-live", t3); err != nil || ok {
		t.Fatalf("live family: %v %v", ok, err)
	}

	type entry struct {
		kind storage.RevokedKind
		id   string
	}
	entries := func(since, now time.Time) []entry {
		t.Helper()
		list, err := s.RevokedSince(ctx, since, now)
		wantErr(t, "RevokedSince", err, nil)
		var out []entry
		for _, e := range list {
			if e.RevokedAt.Before(since.Truncate(Precision)) || !now.Before(e.ExpiresAt) {
				t.Fatalf("RevokedSince(%v, %v) returned %+v", since, now, e)
			}
			out = append(out, entry{e.Kind, e.ID})
		}
		sort.Slice(out, func(i, j int) bool { return string(out[i].kind)+out[i].id < string(out[j].kind)+out[j].id })
		return out
	}
	mustEqual(t, "RevokedSince all", entries(time.Time{}, t3), []entry{
		{storage.RevokedFamily, "f1"}, {storage.RevokedFamily, "f2"}, {storage.RevokedFamily, "f3"},
		{storage.RevokedAccessToken, "j1"},
	})
	// Incremental: only what was revoked at or after since.
	mustEqual(t, "RevokedSince t2", entries(t2, t3), []entry{{storage.RevokedFamily, "f2"}, {storage.RevokedFamily, "f3"}})
	mustEqual(t, "RevokedSince t3", entries(t3, t3), []entry{{storage.RevokedFamily, "f3"}})
	if got := entries(t3.Add(time.Microsecond), t3); len(got) != 0 {
		t.Fatalf("RevokedSince after the last revocation: %+v", got)
	}
	// Expiry: the jti leaves the list at its ExpiresAt; families after
	// FamilyRevocationTTL (every access token of theirs has expired by then).
	mustEqual(t, "RevokedSince after the jti expired", entries(time.Time{}, t0.Add(15*time.Minute)), []entry{
		{storage.RevokedFamily, "f1"}, {storage.RevokedFamily, "f2"}, {storage.RevokedFamily, "f3"},
	})
	if got := entries(time.Time{}, t3.Add(storage.FamilyRevocationTTL)); len(got) != 0 {
		t.Fatalf("RevokedSince after every entry expired: %+v", got)
	}
	list, err = s.RevokedSince(ctx, t1, t3)
	wantErr(t, "RevokedSince", err, nil)
	for _, e := range list {
		if e.Kind == storage.RevokedFamily && e.ID == "f1" {
			mustEqual(t, "family entry", e, storage.RevokedToken{Kind: storage.RevokedFamily, ID: "f1",
				RevokedAt: t1, ExpiresAt: t1.Add(storage.FamilyRevocationTTL)})
		}
	}
}

func testReplays(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Hour)
	exp := now.Add(time.Minute)
	wantErr(t, "UseOnce", s.UseOnce(ctx, "dpop:jti-1", exp, now), nil)
	wantErr(t, "UseOnce again", s.UseOnce(ctx, "dpop:jti-1", exp, now.Add(time.Second)), storage.ErrAlreadyUsed)
	wantErr(t, "UseOnce just before expiry", s.UseOnce(ctx, "dpop:jti-1", exp, exp.Add(-time.Microsecond)), storage.ErrAlreadyUsed)
	wantErr(t, "UseOnce other key", s.UseOnce(ctx, "assertion:jti-1", exp, now), nil)
	// Once expired, the key may be recorded again (it is then refused by
	// its own exp check upstream; the store only forgets).
	wantErr(t, "UseOnce after expiry", s.UseOnce(ctx, "dpop:jti-1", exp.Add(time.Minute), exp), nil)
	wantErr(t, "UseOnce after re-recording", s.UseOnce(ctx, "dpop:jti-1", exp.Add(time.Minute), exp), storage.ErrAlreadyUsed)

	for round := range 3 {
		key := label("race-jti", round)
		errs := race(Racers, func(int) error { return s.UseOnce(ctx, key, exp, now) })
		oneWinner(t, "UseOnce race", errs, storage.ErrAlreadyUsed)
	}
}

func testRevokeConsent(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Hour)
	err := s.RevokeConsent(ctx, "u1", "c1", now, "consent revoked")
	wantErr(t, "RevokeConsent with nothing to revoke", err, storage.ErrNotFound)

	wantErr(t, "PutConsent", s.PutConsent(ctx, &storage.Consent{UserID: "u1", ClientID: "c1", Scope: "openid", CreatedAt: base, UpdatedAt: base}), nil)
	wantErr(t, "PutConsent", s.PutConsent(ctx, &storage.Consent{UserID: "u1", ClientID: "c2", Scope: "openid", CreatedAt: base, UpdatedAt: base}), nil)
	for _, f := range []*storage.TokenFamily{newFamily("rc-1", "u1", "c1"), newFamily("rc-2", "u1", "c1"),
		newFamily("rc-other-client", "u1", "c2"), newFamily("rc-other-user", "u2", "c1")} {
		wantErr(t, "CreateFamily", s.CreateFamily(ctx, f), nil)
	}
	rt := newRefresh("rc-rt", "rc-1")
	wantErr(t, "CreateRefreshToken", s.CreateRefreshToken(ctx, rt), nil)

	wantErr(t, "RevokeConsent", s.RevokeConsent(ctx, "u1", "c1", now, "consent revoked"), nil)
	_, err = s.GetConsent(ctx, "u1", "c1")
	wantErr(t, "GetConsent after RevokeConsent", err, storage.ErrNotFound)
	for _, id := range []string{"rc-1", "rc-2"} {
		if f := familyRevoked(t, s, id); f.Reason != "consent revoked" {
			t.Fatalf("reason %q", f.Reason)
		}
	}
	_, err = s.RotateRefreshToken(ctx, rt.Hash, newRefresh("rc-rt2", "rc-1"), now, 0)
	wantErr(t, "refresh after consent revoked", err, storage.ErrRevoked)
	if _, err := s.GetConsent(ctx, "u1", "c2"); err != nil {
		t.Fatalf("other client's consent: %v", err)
	}
	for _, id := range []string{"rc-other-client", "rc-other-user"} {
		f, err := s.GetFamily(ctx, id)
		wantErr(t, "GetFamily", err, nil)
		if !f.RevokedAt.IsZero() {
			t.Fatalf("RevokeConsent revoked unrelated family %s", id)
		}
	}
	wantErr(t, "RevokeConsent again", s.RevokeConsent(ctx, "u1", "c1", now, "consent revoked"), storage.ErrNotFound)

	// Live families without a remembered consent are still revoked.
	wantErr(t, "CreateFamily", s.CreateFamily(ctx, newFamily("rc-3", "u3", "c1")), nil)
	wantErr(t, "RevokeConsent families only", s.RevokeConsent(ctx, "u3", "c1", now, "consent revoked"), nil)
	familyRevoked(t, s, "rc-3")
}
