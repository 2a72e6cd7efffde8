package keys_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

func openSQLite(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSQLiteRoundTrip runs the key life cycle through a real SQLite file
// opened twice, as the server and the CLI do.
func TestSQLiteRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fhirgate.db")
	kek := testKEK(t)
	c := newClock()

	server := newManager(t, openSQLite(t, path), kek, c)
	if n := len(server.Keys()); n != 2 {
		t.Fatalf("first start: %d keys", n)
	}
	oldTok, err := server.Sign("ES256", "at+jwt", claims{Sub: "before"})
	if err != nil {
		t.Fatal(err)
	}

	// A wrong KEK cannot open the stored keys.
	if _, err := keys.New(ctx, keys.Options{Store: openSQLite(t, path), KEK: testKEK(t), Now: c.Now}); !errors.Is(err, keys.ErrDecrypt) {
		t.Fatalf("wrong KEK: %v, want ErrDecrypt", err)
	}

	// The CLI rotates through its own connection.
	cli := newManager(t, openSQLite(t, path), kek, c)
	if len(cli.Keys()) != 2 {
		t.Fatalf("second start created keys: %d", len(cli.Keys()))
	}
	kids, err := cli.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if k, _ := server.ActiveKID("ES256"); k != kids[0] {
		t.Fatalf("active ES256 %s, want %s", k, kids[0])
	}
	if k, _ := server.ActiveKID("RS256"); k != kids[1] {
		t.Fatalf("active RS256 %s, want %s", k, kids[1])
	}
	newTok, _ := server.Sign("ES256", "at+jwt", claims{Sub: "after"})
	if header(t, newTok)["kid"] != kids[0] {
		t.Error("not signed with the rotated key")
	}
	for _, tok := range []string{oldTok, newTok} {
		var got claims
		if err := server.Verify(tok, []string{"ES256"}, "at+jwt", &got); err != nil {
			t.Errorf("verify: %v", err)
		}
	}
	if n := len(server.JWKS().Keys); n != 4 {
		t.Errorf("JWKS: %d keys, want 4", n)
	}
	active := 0
	for _, k := range server.Keys() {
		if k.Active {
			active++
		}
	}
	if active != 2 {
		t.Errorf("%d active keys, want 2", active)
	}
}
