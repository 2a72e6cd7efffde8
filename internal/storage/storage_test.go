package storage

import (
	"bytes"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
)

func TestRefreshTokenKey(t *testing.T) {
	now := time.UnixMilli(1_795_000_000_123)
	tok := secret.TimedToken(now)
	key := RefreshTokenKey(tok)
	prefix, _ := secret.TimedPrefix(tok)
	if len(key) != 16+32 || !bytes.HasPrefix(key, prefix) || !bytes.Equal(key[16:], HashSecret(tok)) {
		t.Fatalf("RefreshTokenKey(timed) = %x: want its prefix then its SHA-256", key)
	}
	if bytes.Contains(key, []byte(tok[22:])) {
		t.Fatal("the key holds the token's secret part")
	}
	// Tokens issued later are filed after earlier ones.
	later := RefreshTokenKey(secret.TimedToken(now.Add(time.Millisecond)))
	if bytes.Compare(later, key) <= 0 {
		t.Fatalf("a later token's key %x sorts before %x", later, key)
	}
	// Another token with the same prefix but a different secret part has
	// another key: the prefix alone finds nothing.
	if forged := tok[:22] + secret.Token(); bytes.Equal(RefreshTokenKey(forged), key) {
		t.Fatal("a token with the same prefix and another secret has the same key")
	}
	// A plain token (issued before TimedToken) keeps its plain hash.
	plain := secret.Token()
	if !bytes.Equal(RefreshTokenKey(plain), HashSecret(plain)) {
		t.Fatal("a plain token's key is not its hash")
	}
}
