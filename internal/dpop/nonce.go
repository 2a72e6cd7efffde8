package dpop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"
)

// NonceSource hands out and checks server-provided DPoP nonces (RFC 9449 §8).
type NonceSource interface {
	// Nonce returns a nonce for the DPoP-Nonce response header.
	Nonce() string
	// Valid reports whether a nonce from a proof is still accepted.
	Valid(nonce string) bool
}

// DefaultNoncePeriod is how long a nonce from Nonces stays current.
const DefaultNoncePeriod = 5 * time.Minute

// Nonces is a stateless NonceSource: a nonce is a time period number with
// its HMAC-SHA256 under a secret key; nonces of the current and the previous
// period are valid. Nodes sharing the key accept each other's nonces.
type Nonces struct {
	key    []byte
	period time.Duration
	now    func() time.Time
}

// NewNonces returns a nonce source. key must hold at least 32 bytes (nil
// makes a random per-process key, for a single node); period defaults to
// DefaultNoncePeriod; now defaults to time.Now.
func NewNonces(key []byte, period time.Duration, now func() time.Time) (*Nonces, error) {
	if key == nil {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("dpop: nonce key: %w", err)
		}
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("%w: nonce key shorter than 32 bytes", ErrConfig)
	}
	if period < 0 {
		return nil, fmt.Errorf("%w: negative nonce period", ErrConfig)
	}
	if period == 0 {
		period = DefaultNoncePeriod
	}
	if now == nil {
		now = time.Now
	}
	return &Nonces{key: append([]byte(nil), key...), period: period, now: now}, nil
}

const nonceMACLen = 16

func (n *Nonces) counter() uint64 { return uint64(n.now().UnixNano() / int64(n.period)) }

func (n *Nonces) make(c uint64) []byte {
	buf := make([]byte, 8, 8+nonceMACLen)
	binary.BigEndian.PutUint64(buf, c)
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("fhirgate dpop nonce\x00"))
	m.Write(buf)
	return m.Sum(buf)[:8+nonceMACLen]
}

// Nonce implements NonceSource.
func (n *Nonces) Nonce() string {
	return base64.RawURLEncoding.EncodeToString(n.make(n.counter()))
}

// Valid implements NonceSource: the nonce of the current or previous period.
func (n *Nonces) Valid(nonce string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 8+nonceMACLen {
		return false
	}
	c := binary.BigEndian.Uint64(raw[:8])
	cur := n.counter()
	if c != cur && c+1 != cur {
		return false
	}
	return hmac.Equal(raw, n.make(c))
}
