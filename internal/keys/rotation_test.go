package keys_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/keys"
)

func jwksKIDs(m *keys.Manager) []string {
	var out []string
	for _, k := range m.JWKS().Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func TestScheduledRotation(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	rec := &audittest.Recorder{}
	store := openSQLite(t, filepath.Join(t.TempDir(), "fhirgate.db"))
	period, pre := 720*time.Hour, 24*time.Hour
	m, err := keys.New(ctx, keys.Options{Store: store, KEK: testKEK(t), Now: c.Now, Auditor: rec,
		RotationPeriod: period, Prepublish: pre})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := m.ActiveKID(keys.ES256)
	step := func(wantPub, wantAct int) ([]string, []string) {
		t.Helper()
		pub, act, err := m.RotateIfDue(ctx)
		if err != nil || len(pub) != wantPub || len(act) != wantAct {
			t.Fatalf("at %s: published %v activated %v err %v; want %d and %d", c.Now(), pub, act, err, wantPub, wantAct)
		}
		return pub, act
	}
	c.Add(period - pre - time.Minute)
	step(0, 0)
	c.Add(time.Minute)
	pub, _ := step(2, 0)
	step(0, 0) // idempotent: the next keys exist already
	// The next keys are published but do not sign yet.
	for _, kid := range pub {
		if !slices.Contains(jwksKIDs(m), kid) {
			t.Fatalf("next key %s not in the JWK Set", kid)
		}
	}
	if kid, _ := m.ActiveKID(keys.ES256); kid != first {
		t.Fatal("the next key signs before its time")
	}
	oldTok, err := m.Sign(keys.ES256, "at+jwt", claims{Sub: "old"})
	if err != nil {
		t.Fatal(err)
	}
	c.Add(pre - time.Second)
	step(0, 0)
	c.Add(time.Second)
	_, act := step(0, 2)
	next, _ := m.ActiveKID(keys.ES256)
	if next == first || !slices.Contains(act, next) || !slices.Contains(pub, next) {
		t.Fatalf("active %s after rotation (first %s, activated %v)", next, first, act)
	}
	if len(rec.Events()) != 2 {
		t.Fatalf("%d audit events", len(rec.Events()))
	}
	// A token the retired key signed keeps verifying until it expires (60 min max).
	c.Add(59 * time.Minute)
	var got claims
	if err := m.Verify(oldTok, []string{keys.ES256}, "at+jwt", &got); err != nil || got.Sub != "old" {
		t.Fatalf("old token after rotation: %v", err)
	}
	if !slices.Contains(jwksKIDs(m), first) {
		t.Fatal("retired key left the JWK Set while its tokens live")
	}
	c.Add(keys.DefaultRetiredKeyTTL)
	if err := m.Verify(oldTok, []string{keys.ES256}, "at+jwt", &got); !errors.Is(err, keys.ErrInvalidJWT) {
		t.Fatalf("old key still verifies long after retirement: %v", err)
	}
	if slices.Contains(jwksKIDs(m), first) {
		t.Fatal("long-retired key still published")
	}
	// The next cycle counts from the activation.
	c.Add(period - pre - keys.DefaultRetiredKeyTTL - 59*time.Minute - time.Minute)
	step(0, 0)
	c.Add(time.Minute)
	step(2, 0)
}

func TestScheduleOffAndValidation(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := newManager(t, &memKeys{}, testKEK(t), c)
	c.Add(10000 * time.Hour)
	if pub, act, err := m.RotateIfDue(ctx); err != nil || pub != nil || act != nil {
		t.Fatalf("rotation without a schedule: %v %v %v", pub, act, err)
	}
	for _, o := range []keys.Options{
		{RotationPeriod: time.Hour},
		{RotationPeriod: 720 * time.Hour, Prepublish: 400 * time.Hour},
		{RotationPeriod: 720 * time.Hour, Prepublish: time.Minute},
	} {
		o.Store, o.KEK, o.Now = &memKeys{}, testKEK(t), c.Now
		if _, err := keys.New(ctx, o); err == nil {
			t.Errorf("accepted %+v", o)
		}
	}
	// Default prepublish: a day, or half a short period.
	if _, err := keys.New(ctx, keys.Options{Store: &memKeys{}, KEK: testKEK(t), Now: c.Now, RotationPeriod: 3 * time.Hour}); err != nil {
		t.Fatal(err)
	}
}

func TestScheduleRuns(t *testing.T) {
	c := newClock()
	m, err := keys.New(context.Background(), keys.Options{Store: &memKeys{}, KEK: testKEK(t), Now: c.Now,
		RotationPeriod: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Add(2 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Schedule(ctx, time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(m.JWKS().Keys) < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(m.JWKS().Keys); n != 4 {
		t.Fatalf("%d published keys, want 4", n)
	}
}
