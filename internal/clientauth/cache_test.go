package clientauth_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// countingClients counts the store reads behind a ClientCache.
type countingClients struct {
	storage.Clients
	gets atomic.Int64
}

func (c *countingClients) GetClient(ctx context.Context, id string) (*storage.Client, error) {
	c.gets.Add(1)
	return c.Clients.GetClient(ctx, id)
}

func TestClientCache(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	add(t, st, "app", oauth.AuthClientSecretBasic, "s3cret-app", false)
	store := &countingClients{Clients: st}
	now := time.Unix(1_800_000_000, 0)
	cache := clientauth.NewClientCache(store, 2*time.Second, func() time.Time { return now })
	a := clientauth.Authenticator{Clients: cache}
	basic := clientauth.Credentials{HasBasic: true, BasicID: "app", BasicSecret: "s3cret-app"}

	for range 3 {
		if _, err := a.Authenticate(ctx, basic); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.gets.Load(); n != 1 {
		t.Fatalf("%d store reads for 3 authentications within the TTL, want 1", n)
	}
	// A copy is handed out: changing it does not change the cache.
	c, _ := cache.GetClient(ctx, "app")
	c.Disabled = true
	if _, err := a.Authenticate(ctx, basic); err != nil {
		t.Fatalf("a caller's change leaked into the cache: %v", err)
	}

	// Disabled elsewhere (another node, the CLI): refused once the TTL passed.
	if _, err := st.UpdateClient(ctx, "app", func(c *storage.Client) error { c.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if _, err := a.Authenticate(ctx, basic); !errors.Is(err, clientauth.ErrDisabledClient) {
		t.Fatalf("disabled client after the TTL: %v", err)
	}

	// Changed through the cache: seen at once.
	if _, err := cache.UpdateClient(ctx, "app", func(c *storage.Client) error { c.Disabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, basic); err != nil {
		t.Fatalf("re-enabled through the cache: %v", err)
	}
	if err := cache.DeleteClient(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, basic); !errors.Is(err, clientauth.ErrUnknownClient) {
		t.Fatalf("deleted through the cache: %v", err)
	}

	// Unknown ids are not cached: each one reaches the store, and a client
	// registered afterwards is found at once.
	before := store.gets.Load()
	for range 3 {
		if _, err := cache.GetClient(ctx, "later"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown client: %v", err)
		}
	}
	if n := store.gets.Load() - before; n != 3 {
		t.Fatalf("unknown id read %d times, want 3 (not cached)", n)
	}
	add(t, st, "later", oauth.AuthNone, "", false)
	if _, err := cache.GetClient(ctx, "later"); err != nil {
		t.Fatalf("client registered after a miss: %v", err)
	}
}
