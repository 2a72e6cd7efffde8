package authorize

import (
	"strings"
	"testing"
)

// TestDPoPJKTBindsCode: dpop_jkt (RFC 9449 §10) reaches the code record; a
// malformed one is refused with invalid_request at the redirect URI.
func TestDPoPJKTBindsCode(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	jkt := strings.Repeat("A", 42) + "w"
	p := b.login(b.authorize(e.params("dpop_jkt", jkt)), "amy", pw)
	ac := e.code(e.redirectParams(b.approve(p)))
	if ac.DPoPJKT != jkt {
		t.Fatalf("code DPoPJKT %q, want %q", ac.DPoPJKT, jkt)
	}
	// Without dpop_jkt the code is unbound (remembered consent: straight back).
	if ac := e.code(e.redirectParams(b.authorize(e.params("state", "x")))); ac.DPoPJKT != "" {
		t.Fatalf("unbound code has DPoPJKT %q", ac.DPoPJKT)
	}
	for _, bad := range []string{"short", strings.Repeat("A", 44), strings.Repeat("+", 43)} {
		q := e.redirectParams(b.authorize(e.params("dpop_jkt", bad)))
		if q.Get("error") != "invalid_request" || q.Get("code") != "" {
			t.Fatalf("dpop_jkt %q: %v", bad, q)
		}
	}
	q := e.params()
	q["dpop_jkt"] = []string{""}
	if r := e.redirectParams(b.authorize(q)); r.Get("error") != "invalid_request" {
		t.Fatalf("empty dpop_jkt: %v", r)
	}
}
