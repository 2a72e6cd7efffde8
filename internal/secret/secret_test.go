package secret

import (
	"encoding/binary"
	"regexp"
	"testing"
	"time"
)

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestTimeIDSortsByTime(t *testing.T) {
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	prev := TimeID(start)
	// Steps that change low, middle and high digits of the encoding.
	for _, step := range []time.Duration{time.Millisecond, 63 * time.Millisecond, time.Second, 17 * time.Minute, 24 * time.Hour, 400 * 24 * time.Hour} {
		for i := 0; i < 50; i++ {
			start = start.Add(step)
			id := TimeID(start)
			if len(id) != 22 || !urlSafe.MatchString(id) {
				t.Fatalf("TimeID = %q: want 22 URL-safe characters", id)
			}
			if id <= prev {
				t.Fatalf("TimeID at %v = %q sorts before or equal to the one a step (%v) earlier, %q", start, id, step, prev)
			}
			prev = id
		}
	}
}

func TestTimeIDCarriesTimeAndRandomness(t *testing.T) {
	now := time.UnixMilli(1_795_000_000_123)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := TimeID(now)
		if seen[id] {
			t.Fatalf("TimeID repeated %q within one millisecond", id)
		}
		seen[id] = true
		raw, err := sortedEncoding.DecodeString(id)
		if err != nil || len(raw) != 16 {
			t.Fatalf("decode %q: %d bytes, %v", id, len(raw), err)
		}
		var ts [8]byte
		copy(ts[2:], raw[:6])
		if got := int64(binary.BigEndian.Uint64(ts[:])); got != now.UnixMilli() {
			t.Fatalf("TimeID carries %d ms, want %d", got, now.UnixMilli())
		}
	}
}

func TestSortedEncodingOrdersLikeBytes(t *testing.T) {
	// Every single-byte step must keep order once encoded.
	for v := 0; v < 255; v++ {
		a := sortedEncoding.EncodeToString([]byte{byte(v), 0, 0})
		b := sortedEncoding.EncodeToString([]byte{byte(v + 1), 0, 0})
		if a >= b {
			t.Fatalf("encoding of %d (%q) does not sort before %d (%q)", v, a, v+1, b)
		}
	}
}

func TestTimedToken(t *testing.T) {
	now := time.UnixMilli(1_795_000_000_123)
	tok := TimedToken(now)
	if len(tok) != 65 || !urlSafe.MatchString(tok) {
		t.Fatalf("TimedToken = %q: want 65 URL-safe characters", tok)
	}
	prefix, ok := TimedPrefix(tok)
	if !ok || len(prefix) != 16 {
		t.Fatalf("TimedPrefix(%q) = %x, %v", tok, prefix, ok)
	}
	if want, _ := sortedEncoding.DecodeString(tok[:22]); string(prefix) != string(want) {
		t.Fatalf("prefix %x, want %x", prefix, want)
	}
	if later := TimedToken(now.Add(time.Millisecond)); later <= tok {
		t.Fatalf("a token issued later (%q) sorts before %q", later, tok)
	}
	// Anything else has no prefix: a plain token, other lengths, a prefix
	// outside the alphabet.
	for _, other := range []string{Token(), tok[:64], tok + "x", "~" + tok[1:], ""} {
		if p, ok := TimedPrefix(other); ok {
			t.Errorf("TimedPrefix(%q) = %x, true; want false", other, p)
		}
	}
}

// TestIDNeverStartsWithDash: a command line would read such an ID as a
// flag. One in 64 plain base64url IDs starts with '-', so 20,000 of them
// without one is no accident.
func TestIDNeverStartsWithDash(t *testing.T) {
	seen := map[byte]bool{}
	for range 20000 {
		id := ID()
		if id[0] == '-' {
			t.Fatalf("ID %q starts with '-'", id)
		}
		if len(id) != 22 {
			t.Fatalf("ID %q: length %d, want 22", id, len(id))
		}
		seen[id[0]] = true
	}
	if len(seen) != 63 {
		t.Errorf("IDs start with %d different characters, want the other 63", len(seen))
	}
}
