package storagetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// People checks the MFA and app-access methods (package mfa, the
// connected-apps page): single-use TOTP steps and recovery codes under
// concurrency, amr/acr on sessions and codes, and the app access summary.
func People(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.GetMFA(ctx, "u1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing mfa: %v", err)
	}
	c := &storage.MFACredential{UserID: "u1", SealedSecret: []byte("sealed"), RecoveryHashes: [][]byte{storage.HashSecret("a"), storage.HashSecret("b")}, CreatedAt: now, UpdatedAt: now}
	if err := s.PutMFA(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.UseTOTPStep(ctx, "u1", 5, now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unconfirmed step: %v", err)
	}
	if got, err := s.GetMFA(ctx, "u1"); err != nil || got.Provisioned {
		t.Fatalf("provisioned by default: %+v %v", got, err)
	}
	c.Confirmed, c.Provisioned = true, true
	if err := s.PutMFA(ctx, c); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.UseTOTPStep(ctx, "u1", 10, now); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, storage.ErrAlreadyUsed) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d winners for one step", wins.Load())
	}
	if err := s.UseTOTPStep(ctx, "u1", 9, now); !errors.Is(err, storage.ErrAlreadyUsed) {
		t.Fatalf("older step: %v", err)
	}
	if err := s.UseRecoveryCode(ctx, "u1", storage.HashSecret("a"), now); err != nil {
		t.Fatal(err)
	}
	if err := s.UseRecoveryCode(ctx, "u1", storage.HashSecret("a"), now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("recovery code reused: %v", err)
	}
	got, err := s.GetMFA(ctx, "u1")
	if err != nil || !got.Confirmed || !got.Provisioned || got.LastStep != 10 || len(got.RecoveryHashes) != 1 || string(got.SealedSecret) != "sealed" {
		t.Fatalf("get mfa %+v %v", got, err)
	}
	if err := s.DeleteMFA(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMFA(ctx, "u1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted mfa: %v", err)
	}

	// Sessions and codes keep their authentication methods.
	sess := &storage.Session{Hash: storage.HashSecret("s"), UserID: "u1", CSRFToken: "c", AMR: "pwd otp", ACR: "urn:x", AuthTime: now, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GetSession(ctx, sess.Hash, now); err != nil || g.AMR != "pwd otp" || g.ACR != "urn:x" {
		t.Fatalf("session amr %+v %v", g, err)
	}
	code := &storage.AuthCode{Hash: storage.HashSecret("code"), ClientID: "c1", UserID: "u1", AMR: "pwd", ACR: "a", FamilyID: "f", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	if g, err := s.ConsumeAuthCode(ctx, code.Hash, now); err != nil || g.AMR != "pwd" || g.ACR != "a" {
		t.Fatalf("code amr %+v %v", g, err)
	}

	// App access: a consent, a live family, a revoked one.
	if err := s.PutConsent(ctx, &storage.Consent{UserID: "u1", ClientID: "app-a", Scope: "patient/*.rs", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"f1", "f2", "f3"} {
		client := "app-b"
		if i == 2 {
			client = "app-c"
		}
		if err := s.CreateFamily(ctx, &storage.TokenFamily{ID: id, ClientID: client, UserID: "u1", Scope: "openid", CreatedAt: now.Add(time.Duration(i) * time.Minute), ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeFamily(ctx, "f3", now, "test"); err != nil {
		t.Fatal(err)
	}
	apps, err := s.ListAppAccess(ctx, "u1", now.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || apps[0].ClientID != "app-a" || apps[0].Scope != "patient/*.rs" || apps[0].ConsentedAt.IsZero() ||
		apps[1].ClientID != "app-b" || apps[1].LiveFamilies != 2 || !apps[1].LastIssued.Equal(now.Add(time.Minute)) || apps[1].Scope != "openid" {
		t.Fatalf("apps %+v", apps)
	}
	if apps, _ := s.ListAppAccess(ctx, "u1", now.Add(2*time.Hour)); len(apps) != 1 {
		t.Fatalf("expired families still listed: %+v", apps)
	}
}
