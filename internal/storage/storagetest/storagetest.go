// Package storagetest is the conformance suite every storage backend runs:
// one call to Run from the backend's test file.
//
// The suite pins down semantics that storage.go leaves to the backend, so
// features can rely on them whatever the backend:
//
//   - Times round-trip at microsecond precision: a stored time comes back
//     Equal to the original truncated to the microsecond, in UTC. The zero
//     time round-trips as the zero time.
//   - Byte slices round-trip by content; nil and empty are not told apart.
//     String slices round-trip exactly, including nil versus empty.
//     LaunchContext (also FHIRContext bytes) round-trips exactly.
//   - A lifetime is [CreatedAt, ExpiresAt): at ExpiresAt a record is expired.
//     A zero ExpiresAt counts as expired (fail closed).
//   - Single-use checks report reuse first: a consumed code or launch, or a
//     rotated refresh token, is ErrAlreadyUsed even if it has expired since.
//     ConsumeAuthCode returns the code with ErrAlreadyUsed and ErrExpired;
//     an expired code is not marked used. RotateRefreshToken returns the old
//     token with ErrAlreadyUsed, ErrRevoked and ErrExpired.
//   - Get* on expired records (auth requests, sessions, registration
//     tokens) return ErrExpired and no record.
//   - DeleteUser and DeleteClient return ErrNotFound for a missing record;
//     DeleteAuthRequest, DeleteSession and DeleteConsent are idempotent.
//   - Update* functions cannot change the record's key; an error from the
//     update function aborts the write and is returned wrapped.
//   - RevokeFamily on an already revoked family keeps the first time and
//     reason; on an unknown family it is ErrNotFound.
//   - CreateRefreshToken for an unknown family is ErrNotFound.
//   - At most one signing key per alg is active; creating a second active
//     one is ErrConflict. ListUsers is ordered by username, ListClients by
//     CreatedAt then ID, ListSigningKeys by CreatedAt then insertion.
//   - RotateRefreshToken records the successor's hash. Within the retry
//     window of the first rotation, while the successor is unused, the old
//     token rotates again and the successor is marked used (presenting it
//     later is reuse); the window is measured from the first rotation, and
//     concurrent retries leave exactly one valid token.
//   - The revocation list holds revoked jti until their ExpiresAt and revoked
//     families until RevokedAt+FamilyRevocationTTL (RevokedSince); IsRevoked
//     answers for any revoked family regardless of age, and never for "".
//   - UseOnce refuses an unexpired key (ErrAlreadyUsed) and accepts an
//     expired one again; exactly one concurrent caller wins.
//   - RevokeConsent is ErrNotFound when there was neither a consent nor a
//     live family; otherwise it deletes the one and revokes the others.
//   - RecordLoginFailure with maxFailures <= 0 never locks.
//   - SearchPatients folds case with strings.ToLower on both sides, orders by
//     the folded name, then name, then id; limit <= 0 means no limit.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// Precision is the time resolution every backend keeps.
const Precision = time.Microsecond

// Racers is how many goroutines hammer each single-use operation at once.
const Racers = 32

// Run runs the conformance suite. open must return a fresh, empty store
// (and register any cleanup of its own, such as dropping a schema); Run
// closes the store when each subtest ends.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	t.Helper()
	sub := func(name string, fn func(t *testing.T, s storage.Store)) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			fn(t, s)
		})
	}
	sub("Ping", func(t *testing.T, s storage.Store) {
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	sub("Users", testUsers)
	sub("UserLockout", testUserLockout)
	sub("Clients", testClients)
	sub("UpdateClient", testUpdateClient)
	sub("Launches", testLaunches)
	sub("ConsumeLaunchRace", testConsumeLaunchRace)
	sub("AuthRequests", testAuthRequests)
	sub("AuthCodes", testAuthCodes)
	sub("ConsumeAuthCodeRace", testConsumeAuthCodeRace)
	sub("RedeemAuthCode", testRedeemAuthCode)
	sub("Sessions", testSessions)
	sub("Consents", testConsents)
	sub("Families", testFamilies)
	sub("RefreshTokens", testRefreshTokens)
	sub("RotateRefreshTokenRace", testRotateRace)
	sub("RotateRefreshTokenRetryWindow", testRotateRetryWindow)
	sub("RotateRefreshTokenRetryRace", testRotateRetryRace)
	sub("RevocationList", testRevocationList)
	sub("Replays", testReplays)
	sub("RevokeConsent", testRevokeConsent)
	sub("SigningKeys", testSigningKeys)
	sub("RegistrationTokens", testRegistrationTokens)
	sub("Patients", testPatients)
	sub("TimePrecision", testTimePrecision)
}

// base is the suite's reference time: not UTC and with nanoseconds, so
// round-trips exercise zone conversion and truncation.
var base = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("UTC+2", 2*3600))

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// hash returns a distinct 32-byte hash for a label.
func hash(label string) []byte { return storage.HashSecret(label) }

// wantErr fails unless err matches target (nil means success expected).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	switch {
	case target == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case target != nil && !errors.Is(err, target):
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// mustEqual compares records after normalising times to UTC microseconds
// and empty byte slices to nil.
func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	g, w := normalize(reflect.ValueOf(got)), normalize(reflect.ValueOf(want))
	if !reflect.DeepEqual(g.Interface(), w.Interface()) {
		t.Fatalf("%s mismatch:\n got  %+v\n want %+v", what, deref(g), deref(w))
	}
}

func deref(v reflect.Value) any {
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v.Interface()
}

var timeType = reflect.TypeFor[time.Time]()

// normalize returns a deep copy of v with times truncated to Precision in
// UTC and empty byte slices as nil.
func normalize(v reflect.Value) reflect.Value {
	if !v.IsValid() {
		return v
	}
	if v.Type() == timeType {
		tm := v.Interface().(time.Time)
		if tm.IsZero() {
			return reflect.ValueOf(time.Time{})
		}
		return reflect.ValueOf(tm.UTC().Truncate(Precision))
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(normalize(v.Elem()))
		return p
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			if out.Field(i).CanSet() {
				out.Field(i).Set(normalize(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if v.Len() == 0 {
				return reflect.Zero(v.Type())
			}
			return reflect.ValueOf(append([]byte(nil), v.Bytes()...)).Convert(v.Type())
		}
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(normalize(v.Index(i)))
		}
		return out
	}
	return v
}

// race runs fn from n goroutines released at once and returns their errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner fails unless exactly one error is nil and every other matches loser.
func oneWinner(t *testing.T, what string, errs []error, loser error) {
	t.Helper()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, loser):
			t.Errorf("%s: racer %d: got %v, want nil or %v", what, i, err, loser)
		}
	}
	if wins != 1 {
		t.Fatalf("%s: %d winners out of %d, want exactly 1", what, wins, len(errs))
	}
}

func fhirContext() []byte {
	return []byte(`[{"reference": "DiagnosticReport/7", "role": "launch"}]`)
}

func launchContext(patient string) storage.LaunchContext {
	return storage.LaunchContext{
		Patient:           patient,
		Encounter:         "enc-" + patient,
		FHIRContext:       fhirContext(),
		NeedPatientBanner: true,
		Intent:            "reconcile-medications",
	}
}

// errUpdate is the error the suite's update functions fail with.
var errUpdate = errors.New("storagetest: update refused")

func label(prefix string, i int) string { return fmt.Sprintf("%s-%02d", prefix, i) }
