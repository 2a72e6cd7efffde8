package chain

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
)

func sample() audit.Event {
	return audit.Event{
		Time: time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.UTC), Action: audit.ActionFHIRRequest, Outcome: audit.Success,
		Reason: "read Patient/1", UserID: "u1", FHIRUser: "Patient/1", ClientID: "app", SourceIP: "192.0.2.1",
		UserAgent: "ua", Patient: "1", Scope: "patient/*.rs", TokenID: "jti", RequestID: "rid",
		Interaction: "read", ResourceType: "Patient", ResourceID: "1", EntriesFiltered: 2,
		AllowedBy: "patient/*.rs", Binding: audit.BindingMTLS,
	}
}

// The canonical encoding is a stored format: changing it breaks every
// existing chain, so its hash is pinned.
func TestHashIsStable(t *testing.T) {
	e := Link("node-a", nil, sample())
	const golden = "0b8be96af2d19e2bfe97fe55aba0567a74a8b95fbf39abc98f01a5fcb92fc5ab"
	if got := hex.EncodeToString(e.Hash); got != golden {
		t.Fatalf("hash of the sample entry changed: %s (canonical encoding must stay fixed; bump Version to change it)", got)
	}
}

// Every field of the event, and the chain fields, are covered by the hash.
func TestEveryFieldIsHashed(t *testing.T) {
	base := Link("n", nil, sample())
	v := reflect.ValueOf(&base.Event).Elem()
	for i := 0; i < v.NumField(); i++ {
		e := base
		f := reflect.ValueOf(&e.Event).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Int:
			f.SetInt(f.Int() + 1)
		case reflect.Struct: // time
			e.Event.Time = e.Event.Time.Add(time.Microsecond)
		default:
			t.Fatalf("field %s of kind %s not covered by this test", v.Type().Field(i).Name, f.Kind())
		}
		if bytes.Equal(Hash(e), base.Hash) {
			t.Errorf("changing %s does not change the hash", v.Type().Field(i).Name)
		}
	}
	for name, mut := range map[string]func(*Entry){
		"node": func(e *Entry) { e.Node = "m" },
		"seq":  func(e *Entry) { e.Seq = 2 },
		"prev": func(e *Entry) { e.Prev = bytes.Repeat([]byte{1}, HashSize) },
	} {
		e := base
		mut(&e)
		if bytes.Equal(Hash(e), base.Hash) {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
}

// Field boundaries are length-prefixed: moving text between fields changes the hash.
func TestNoFieldBoundaryAmbiguity(t *testing.T) {
	a, b := sample(), sample()
	a.UserID, a.FHIRUser = "ab", "c"
	b.UserID, b.FHIRUser = "a", "bc"
	if bytes.Equal(Link("n", nil, a).Hash, Link("n", nil, b).Hash) {
		t.Fatal("shifting text between fields keeps the hash")
	}
}

func TestLinkNormalizesTime(t *testing.T) {
	ev := sample()
	ev.Time = ev.Time.In(time.FixedZone("x", 3600))
	e := Link("n", nil, ev)
	if e.Event.Time.Location() != time.UTC || e.Event.Time.Nanosecond()%1000 != 0 || !e.Valid() {
		t.Fatalf("time not normalized: %v", e.Event.Time)
	}
	next := Link("n", &e, ev)
	if next.Seq != 2 || !bytes.Equal(next.Prev, e.Hash) {
		t.Fatalf("link: %+v", next)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	e := Link("node~with~tildes", nil, sample())
	e.Seq = 42
	c, err := DecodeCursor(EncodeCursor(e))
	if err != nil || c.Node != e.Node || c.Seq != 42 || c.Micros != e.Event.Time.UnixMicro() {
		t.Fatalf("cursor: %+v %v", c, err)
	}
	for _, bad := range []string{"", "!!", "YWJj", EncodeCursor(e)[:5]} {
		if _, err := DecodeCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	e := Link("n", nil, sample())
	back, err := FromJSON(ToJSON(e))
	if err != nil || !back.Valid() || !reflect.DeepEqual(back.Event, e.Event) {
		t.Fatalf("json round trip: %+v %v", back, err)
	}
}

type memSource struct {
	entries []Entry
	cps     []Checkpoint
}

func (m memSource) Nodes(context.Context) ([]string, error) { return []string{"n"}, nil }
func (m memSource) Scan(_ context.Context, _ string, fn func(Entry) error) error {
	for _, e := range m.entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}
func (m memSource) Checkpoints(context.Context, string) ([]Checkpoint, error) { return m.cps, nil }

func build(n int) []Entry {
	var out []Entry
	var prev *Entry
	for i := 0; i < n; i++ {
		out = append(out, Link("n", prev, sample()))
		prev = &out[len(out)-1]
	}
	return out
}

func TestVerifyKinds(t *testing.T) {
	ctx := context.Background()
	cases := map[string]struct {
		src  memSource
		seq  uint64
		kind ProblemKind
	}{
		"reordered lines": {memSource{entries: func() []Entry { e := build(6); e[2], e[3] = e[3], e[2]; return e }()}, 3, Reordered},
		"duplicated":      {memSource{entries: func() []Entry { e := build(4); return append(e, e[1]) }()}, 2, Reordered},
		"first removed":   {memSource{entries: build(4)[1:]}, 1, Removed},
		"last removed":    {memSource{entries: build(4)[:3], cps: []Checkpoint{{Node: "n", Seq: 4}}}, 4, Truncated},
		"bad signature":   {memSource{entries: build(2), cps: []Checkpoint{{Node: "n", Seq: 2, Hash: build(2)[1].Hash}}}, 2, BadCheckpoint},
	}
	for name, tc := range cases {
		opts := VerifyOptions{}
		if tc.kind == BadCheckpoint {
			opts.CheckSignature = func(Checkpoint) error { return errors.New("nope") }
		}
		rep, err := Verify(ctx, tc.src, opts)
		if err != nil {
			t.Fatal(err)
		}
		p := rep.Problems()
		if len(p) != 1 || p[0].Seq != tc.seq || p[0].Kind != tc.kind {
			t.Errorf("%s: %v, want record %d %s", name, p, tc.seq, tc.kind)
		}
	}
	rep, _ := Verify(ctx, memSource{entries: build(5)}, VerifyOptions{})
	if !rep.OK() || rep.Nodes[0].Records != 5 {
		t.Fatalf("intact chain: %+v", rep)
	}
}

func FuzzVerifyNeverPanics(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint8(3))
	f.Fuzz(func(t *testing.T, noise []byte, pick uint8) {
		es := build(5)
		i := int(pick) % len(es)
		if len(noise) > 0 {
			es[i].Event.Reason = string(noise)
			if noise[0]%2 == 0 && i < len(es)-1 { // a rehashed last record needs a checkpoint to be caught
				es[i].Hash = Hash(es[i])
			}
		}
		rep, err := Verify(context.Background(), memSource{entries: es}, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if es[i].Event.Reason != sample().Reason && rep.OK() {
			t.Fatalf("tampered record %d not detected", i+1)
		}
	})
}

func TestSignatureChecker(t *testing.T) {
	cp := Checkpoint{Node: "n", Seq: 7, Hash: bytes.Repeat([]byte{0xab}, HashSize), Signature: "x.y.z"}
	verify := func(claims CheckpointClaims, err error) func(string, []string, string, any) error {
		return func(raw string, algs []string, typ string, out any) error {
			if typ != CheckpointType || len(algs) == 0 {
				t.Fatalf("typ %q algs %v", typ, algs)
			}
			*out.(*CheckpointClaims) = claims
			return err
		}
	}
	if err := SignatureChecker(verify(cp.Claims(), nil), []string{"ES256"})(cp); err != nil {
		t.Fatal(err)
	}
	other := cp.Claims()
	other.Seq = 8
	if err := SignatureChecker(verify(other, nil), []string{"ES256"})(cp); err == nil {
		t.Fatal("claims for another record accepted")
	}
	if err := SignatureChecker(verify(cp.Claims(), errors.New("bad sig")), []string{"ES256"})(cp); err == nil {
		t.Fatal("bad signature accepted")
	}
	cp.Signature = ""
	if err := SignatureChecker(verify(cp.Claims(), nil), []string{"ES256"})(cp); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
}
