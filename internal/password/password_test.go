package password

import (
	"errors"
	"testing"
)

var fast = Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse", fast)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify("correct horse", h); err != nil {
		t.Fatalf("verify right password: %v", err)
	}
	if err := Verify("correct hors", h); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: got %v, want ErrMismatch", err)
	}
	h2, _ := Hash("correct horse", fast)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestRejects(t *testing.T) {
	if _, err := Hash("short", fast); !errors.Is(err, ErrTooShort) {
		t.Fatalf("short password: %v", err)
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=x$AA$AA", "plain"} {
		if err := Verify("whatever1", bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}
