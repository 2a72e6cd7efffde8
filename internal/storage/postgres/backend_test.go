package postgres_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/postgres"
)

// TestMigrationsIdempotent: several nodes opening a fresh schema at once all
// succeed, and reopening applies nothing twice and keeps the data.
func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	d := dsn(t)
	schema := freshSchema(t, d)
	stores := make([]*postgres.Store, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Add(1)
		go func() { defer wg.Done(); stores[i], errs[i] = postgres.OpenSchema(ctx, d, schema) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent OpenSchema %d: %v", i, err)
		}
	}
	if err := stores[0].CreateUser(ctx, &storage.User{ID: "u1", Username: "amy", Role: storage.RolePatient}); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		_ = s.Close()
	}
	s, err := postgres.OpenSchema(ctx, d, schema)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.GetUser(ctx, "u1"); err != nil {
		t.Fatalf("data lost on reopen: %v", err)
	}
	conn, err := pgx.Connect(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, maxV int
	if err := conn.QueryRow(ctx, `SELECT COUNT(*), MAX(version) FROM `+
		pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != maxV || n < 1 {
		t.Fatalf("schema_migrations holds %d rows up to version %d", n, maxV)
	}
}

// TestTwoNodes: two Stores (two nodes) on one database race for the same
// codes; each code has exactly one winner.
func TestTwoNodes(t *testing.T) {
	ctx := context.Background()
	a, d, schema := openSchema(t)
	defer a.Close()
	b, err := postgres.OpenSchema(ctx, d, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	now := time.Now()
	const n = 50
	for i := range n {
		c := &storage.AuthCode{Hash: storage.HashSecret("code-" + strconv.Itoa(i)), ClientID: "c1",
			FamilyID: "f", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		if err := a.CreateAuthCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	wins := 0
	var wg sync.WaitGroup
	for _, s := range []*postgres.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				_, err := s.ConsumeAuthCode(ctx, storage.HashSecret("code-"+strconv.Itoa(i)), now)
				mu.Lock()
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, storage.ErrAlreadyUsed):
					t.Errorf("code %d: %v", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != n {
		t.Fatalf("%d codes consumed, want exactly %d", wins, n)
	}
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	if _, err := postgres.OpenSchema(ctx, "postgres://127.0.0.1/x", `bad"; DROP SCHEMA public; --`); err == nil {
		t.Fatal("OpenSchema accepted an unsafe schema name")
	}
	if _, err := postgres.Open(ctx, "postgres://%zz"); err == nil {
		t.Fatal("Open accepted a malformed DSN")
	}
}
