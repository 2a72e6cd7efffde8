package clientreg

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestCreateSecretMethods(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for _, method := range []string{"", "client_secret_basic", "client_secret_post"} {
		t.Run("method="+method, func(t *testing.T) {
			m := valid()
			m.TokenEndpointAuthMethod = method
			c, sec, err := Create(ctx, st, m, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(sec) < 43 {
				t.Fatalf("secret %d characters, want >= 43 (256 bits)", len(sec))
			}
			for _, r := range sec {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
					t.Fatalf("secret is not URL-safe: %q", sec)
				}
			}
			got, err := st.GetClient(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.SecretHash, storage.HashSecret(sec)) {
				t.Fatal("stored hash is not HashSecret(secret)")
			}
			if bytes.Contains(got.SecretHash, []byte(sec)) || got.Name == sec || got.Scope == sec {
				t.Fatal("secret stored in clear")
			}
			if len(got.RegistrationTokenHash) != 0 {
				t.Fatal("CLI-made client has a registration token")
			}
			if got.AuthMethod == "" || got.IDTokenSignedResponseAlg != "RS256" || !got.CreatedAt.Equal(now) {
				t.Fatalf("stored client %+v", got)
			}
		})
	}
}

func TestCreatePublicHasNoSecret(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	m := valid()
	m.TokenEndpointAuthMethod = "none"
	c, sec, err := Create(ctx, st, m, now)
	if err != nil {
		t.Fatal(err)
	}
	if sec != "" {
		t.Fatal("public client got a secret")
	}
	got, err := st.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.SecretHash) != 0 {
		t.Fatal("public client has a stored secret hash")
	}
}

func TestCreateUniqueIDsAndSecrets(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	ids, secrets := map[string]bool{}, map[string]bool{}
	for range 20 {
		c, sec, err := Create(ctx, st, valid(), now)
		if err != nil {
			t.Fatal(err)
		}
		if ids[c.ID] || secrets[sec] {
			t.Fatal("repeated id or secret")
		}
		ids[c.ID], secrets[sec] = true, true
	}
}

func TestCreateRefusesInvalidMetadata(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	m := valid()
	m.RedirectURIs = []string{"http://localhost/cb"}
	if _, _, err := Create(ctx, st, m, now); oauth.As(err).Code != oauth.InvalidRedirectURI {
		t.Fatalf("err = %v", err)
	}
	list, err := st.ListClients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatal("an invalid client was stored")
	}
}

func TestFromClientRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	m := valid()
	m.LaunchURI = "https://app.example.com/launch"
	m.LogoURI = "https://app.example.com/logo.png"
	m.GrantTypes = []string{"authorization_code", "refresh_token"}
	c, _, err := Create(ctx, st, m, now)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Validate(FromClient(c))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Validate(m)
	if back.LaunchURI != want.LaunchURI || back.LogoURI != want.LogoURI || back.Scope != want.Scope ||
		len(back.GrantTypes) != 2 || back.ClientName != want.ClientName {
		t.Fatalf("round trip %+v != %+v", back, want)
	}
}

func TestNewRegistrationToken(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	tok, err := NewRegistrationToken(ctx, st, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) < 43 {
		t.Fatal("token too short")
	}
	rec, err := st.GetRegistrationToken(ctx, storage.HashSecret(tok), now.Add(59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !rec.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("expires %v", rec.ExpiresAt)
	}
	if _, err := st.GetRegistrationToken(ctx, storage.HashSecret(tok), now.Add(61*time.Minute)); !errors.Is(err, storage.ErrExpired) {
		t.Fatalf("after expiry: %v", err)
	}
	if _, err := st.GetRegistrationToken(ctx, []byte(tok), now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("plaintext lookup: %v (token must be stored only as a hash)", err)
	}
	for _, ttl := range []time.Duration{0, -time.Second, MaxRegistrationTokenTTL + time.Second} {
		if _, err := NewRegistrationToken(ctx, st, ttl, now); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("ttl %v: %v", ttl, err)
		}
	}
}

func TestBuildBackendClient(t *testing.T) {
	m := valid()
	backend(&m)
	m.DPoPBoundAccessTokens = true
	m.RequirePushedAuthorizationRequests = true
	c, plain, err := Build(m, time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if plain != "" || c.SecretHash != nil {
		t.Fatal("a private_key_jwt client got a secret")
	}
	if !c.DPoPBoundAccessTokens || !c.RequirePAR || len(c.JWKS) == 0 || c.AuthMethod != "private_key_jwt" {
		t.Fatalf("client %+v", c)
	}
	back := FromClient(c)
	if !back.DPoPBoundAccessTokens || !back.RequirePushedAuthorizationRequests || back.ResponseTypes != nil ||
		len(back.GrantTypes) != 1 || back.GrantTypes[0] != "client_credentials" {
		t.Fatalf("metadata %+v", back)
	}
	m = valid()
	m.TokenEndpointAuthMethod = "tls_client_auth"
	m.TLSClientAuthSubjectDN = " CN=app,O=Example "
	c, plain, err = Build(m, time.Unix(1_800_000_000, 0))
	if err != nil || plain != "" || c.TLSClientAuthSubjectDN != "CN=app,O=Example" {
		t.Fatalf("tls client %+v %q %v", c, plain, err)
	}
	if FromClient(c).TLSClientAuthSubjectDN != "CN=app,O=Example" {
		t.Fatal("subject DN lost")
	}
}
