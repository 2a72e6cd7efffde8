package storagetest

import (
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

func newKey(kid, alg string, created time.Time, active bool) *storage.SigningKey {
	return &storage.SigningKey{
		KID:              kid,
		Alg:              alg,
		PublicJWK:        []byte(`{"kty":"EC","kid":"` + kid + `"}`),
		EncryptedPrivate: hash("private-" + kid),
		CreatedAt:        created,
		Active:           active,
	}
}

func testSigningKeys(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(24 * time.Hour)
	keys, err := s.ListSigningKeys(ctx)
	wantErr(t, "ListSigningKeys empty", err, nil)
	if len(keys) != 0 {
		t.Fatalf("ListSigningKeys on empty store: %d keys", len(keys))
	}
	wantErr(t, "ActivateSigningKey unknown", s.ActivateSigningKey(ctx, "nope", now), storage.ErrNotFound)

	es1 := newKey("es-1", "ES256", base.Add(time.Minute), true)
	rs1 := newKey("rs-1", "RS256", base, true)
	es2 := newKey("es-2", "ES256", base.Add(time.Hour), false)
	for _, k := range []*storage.SigningKey{es1, rs1, es2} {
		wantErr(t, "CreateSigningKey", s.CreateSigningKey(ctx, k), nil)
	}
	wantErr(t, "CreateSigningKey same kid", s.CreateSigningKey(ctx, newKey("es-1", "ES256", base, false)), storage.ErrConflict)
	wantErr(t, "CreateSigningKey second active ES256", s.CreateSigningKey(ctx, newKey("es-x", "ES256", base, true)), storage.ErrConflict)

	keys, err = s.ListSigningKeys(ctx)
	wantErr(t, "ListSigningKeys", err, nil)
	mustEqual(t, "ListSigningKeys (oldest first)", keys, []storage.SigningKey{*rs1, *es1, *es2})

	wantErr(t, "ActivateSigningKey", s.ActivateSigningKey(ctx, "es-2", now), nil)
	keys, err = s.ListSigningKeys(ctx)
	wantErr(t, "ListSigningKeys", err, nil)
	wantES1 := *es1
	wantES1.Active, wantES1.RetiredAt = false, now
	wantES2 := *es2
	wantES2.Active = true
	mustEqual(t, "keys after rotation (RS256 untouched)", keys, []storage.SigningKey{*rs1, wantES1, wantES2})

	// Activating the active key changes nothing.
	wantErr(t, "ActivateSigningKey active", s.ActivateSigningKey(ctx, "es-2", now.Add(time.Hour)), nil)
	keys, err = s.ListSigningKeys(ctx)
	wantErr(t, "ListSigningKeys", err, nil)
	mustEqual(t, "keys after re-activation", keys, []storage.SigningKey{*rs1, wantES1, wantES2})
}

func testRegistrationTokens(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	now := base.Add(time.Minute)
	_, err := s.GetRegistrationToken(ctx, hash("nope"), now)
	wantErr(t, "GetRegistrationToken unknown", err, storage.ErrNotFound)
	rt := &storage.RegistrationToken{Hash: hash("reg-1"), CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour)}
	wantErr(t, "CreateRegistrationToken", s.CreateRegistrationToken(ctx, rt), nil)
	wantErr(t, "CreateRegistrationToken same hash", s.CreateRegistrationToken(ctx, rt), storage.ErrConflict)
	got, err := s.GetRegistrationToken(ctx, rt.Hash, now)
	wantErr(t, "GetRegistrationToken", err, nil)
	mustEqual(t, "GetRegistrationToken", got, rt)
	_, err = s.GetRegistrationToken(ctx, rt.Hash, rt.ExpiresAt)
	wantErr(t, "GetRegistrationToken at ExpiresAt", err, storage.ErrExpired)
}

func testPatients(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	_, err := s.GetPatient(ctx, "nope")
	wantErr(t, "GetPatient unknown", err, storage.ErrNotFound)
	list, err := s.SearchPatients(ctx, "", 10)
	wantErr(t, "SearchPatients empty", err, nil)
	if len(list) != 0 {
		t.Fatalf("SearchPatients on empty store: %v", list)
	}

	ps := []storage.Patient{
		{ID: "p4", Name: "Zoe Amyot", BirthDate: "1990-01-01"},
		{ID: "p1", Name: "Amy Shaw", BirthDate: "1987-02-20"},
		{ID: "p3", Name: "bob amyx", BirthDate: "2001-12-31"},
		{ID: "p2", Name: "Carl Ölund", BirthDate: "1950-06-15"},
		{ID: "p5", Name: "Percent 100%_x", BirthDate: "1970-01-01"},
	}
	for i := range ps {
		wantErr(t, "PutPatient", s.PutPatient(ctx, &ps[i]), nil)
	}
	got, err := s.GetPatient(ctx, "p1")
	wantErr(t, "GetPatient", err, nil)
	mustEqual(t, "GetPatient", got, &ps[1])

	search := func(q string, limit int, want ...storage.Patient) {
		t.Helper()
		got, err := s.SearchPatients(ctx, q, limit)
		wantErr(t, "SearchPatients "+q, err, nil)
		if want == nil {
			want = []storage.Patient{}
		}
		if got == nil {
			got = []storage.Patient{}
		}
		mustEqual(t, "SearchPatients("+q+")", got, want)
	}
	amy, bob, carl, pct, zoe := ps[1], ps[2], ps[3], ps[4], ps[0]
	search("", 0, amy, bob, carl, pct, zoe)
	search("AMY", 10, amy, bob, zoe)
	search("my", 2, amy, bob)
	search("amy s", 10, amy)
	search("ölu", 10, carl)
	search("ÖLUND", 10, carl)
	search("%", 10, pct)
	search("_", 10, pct)
	search("y_", 10)
	search("nobody", 10)

	// PutPatient replaces.
	amy2 := storage.Patient{ID: "p1", Name: "Amy Shaw-Jones", BirthDate: "1987-02-21"}
	wantErr(t, "PutPatient replace", s.PutPatient(ctx, &amy2), nil)
	got, err = s.GetPatient(ctx, "p1")
	wantErr(t, "GetPatient", err, nil)
	mustEqual(t, "GetPatient after replace", got, &amy2)
	search("jones", 10, amy2)
}

// testTimePrecision checks that times keep microseconds, come back in UTC,
// and that times far from now (and before 1970) survive.
func testTimePrecision(t *testing.T, s storage.Store) {
	ctx := ctxT(t)
	for i, tm := range []time.Time{
		base,
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2999, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", -7*3600)),
		time.Now(),
	} {
		rt := &storage.RegistrationToken{Hash: hash(label("tp", i)), CreatedAt: tm, ExpiresAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}
		wantErr(t, "CreateRegistrationToken", s.CreateRegistrationToken(ctx, rt), nil)
		got, err := s.GetRegistrationToken(ctx, rt.Hash, base)
		wantErr(t, "GetRegistrationToken", err, nil)
		want := tm.Truncate(Precision)
		if !got.CreatedAt.Equal(want) {
			t.Errorf("time %v came back as %v, want %v", tm, got.CreatedAt, want)
		}
		if got.CreatedAt.Location() != time.UTC {
			t.Errorf("time %v came back in %v, want UTC", tm, got.CreatedAt.Location())
		}
	}
}
