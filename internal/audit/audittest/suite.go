package audittest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
)

// SinkHarness adapts one chain.Sink implementation to RunSinkSuite.
type SinkHarness struct {
	// Open returns a new, empty sink; the harness closes it at test end.
	Open func(t *testing.T) chain.Sink
	// Rewrite replaces node's stored entries with entries, in this order and
	// with their fields exactly as given, bypassing every check (tampering).
	Rewrite func(t *testing.T, s chain.Sink, node string, entries []chain.Entry)
	// Reopen closes s and opens the same storage again; nil skips the
	// durability test.
	Reopen func(t *testing.T, s chain.Sink) chain.Sink
}

// Signer is a test checkpoint signer (HMAC-SHA256); Check verifies its output.
type Signer struct{ Key []byte }

// Sign implements trail.Signer.
func (s Signer) Sign(alg, typ string, claims any) (string, error) {
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	head := base64.RawURLEncoding.EncodeToString([]byte(alg + "|" + typ))
	payload := head + "." + base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, s.Key)
	mac.Write([]byte(payload))
	return payload + "." + hex.EncodeToString(mac.Sum(nil)), nil
}

// Check verifies a checkpoint signed by Sign and that its claims match cp.
func (s Signer) Check(cp chain.Checkpoint) error {
	i := strings.LastIndexByte(cp.Signature, '.')
	if i < 0 {
		return errors.New("unsigned checkpoint")
	}
	mac := hmac.New(sha256.New, s.Key)
	mac.Write([]byte(cp.Signature[:i]))
	if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(cp.Signature[i+1:])) {
		return errors.New("bad signature")
	}
	parts := strings.Split(cp.Signature[:i], ".")
	body, err := base64.RawURLEncoding.DecodeString(parts[len(parts)-1])
	if err != nil {
		return err
	}
	var got chain.CheckpointClaims
	if err := json.Unmarshal(body, &got); err != nil {
		return err
	}
	if want := cp.Claims(); got.Node != want.Node || got.Seq != want.Seq || got.Hash != want.Hash {
		return fmt.Errorf("signed claims %+v do not match checkpoint %+v", got, want)
	}
	return nil
}

// SampleEvent returns a fully populated event number i.
func SampleEvent(i int, at time.Time) audit.Event {
	return audit.Event{
		Time: at, Action: audit.ActionFHIRRequest, Outcome: audit.Success,
		Reason: fmt.Sprintf("read Observation/o%d", i), UserID: fmt.Sprintf("user-%d", i%3),
		FHIRUser: fmt.Sprintf("Practitioner/p%d", i%3), ClientID: fmt.Sprintf("app-%d", i%2),
		SourceIP: "192.0.2.7", UserAgent: "test-agent/1.0", Patient: fmt.Sprintf("pat-%d", i%4),
		Scope: "patient/Observation.rs openid", TokenID: fmt.Sprintf("jti-%d", i), RequestID: fmt.Sprintf("req-%d", i),
		Interaction: "read", ResourceType: "Observation", ResourceID: fmt.Sprintf("o%d", i),
		EntriesFiltered: i % 5, AllowedBy: "patient/Observation.rs", Binding: audit.BindingDPoP,
	}
}

// RunSinkSuite runs the sink conformance tests: append, head and scan,
// conflicts, round-tripping every field, queries with paging, checkpoints,
// concurrent group commit through a trail, several nodes, durability, and
// tamper detection (edited, rehashed, deleted, swapped, truncated and
// rewritten records).
func RunSinkSuite(t *testing.T, h SinkHarness) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	open := func(t *testing.T) chain.Sink {
		s := h.Open(t)
		t.Cleanup(func() { s.Close() })
		return s
	}
	fill := func(t *testing.T, s chain.Sink, node string, n, batch int) []chain.Entry {
		t.Helper()
		ctx := context.Background()
		head, ok, err := s.Head(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		var prev *chain.Entry
		if ok {
			prev = &head
		}
		var all []chain.Entry
		for i := 0; i < n; {
			var b []chain.Entry
			for ; i < n && len(b) < batch; i++ {
				e := chain.Link(node, prev, SampleEvent(i, base.Add(time.Duration(i)*time.Second)))
				b = append(b, e)
				prev = &b[len(b)-1]
			}
			if err := s.Append(ctx, b); err != nil {
				t.Fatalf("append: %v", err)
			}
			all = append(all, b...)
		}
		return all
	}
	scan := func(t *testing.T, s chain.Sink, node string) []chain.Entry {
		t.Helper()
		var out []chain.Entry
		if err := s.Scan(context.Background(), node, func(e chain.Entry) error { out = append(out, e); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	verify := func(t *testing.T, s chain.Sink) chain.Report {
		t.Helper()
		rep, err := chain.Verify(context.Background(), s, chain.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	t.Run("AppendHeadScan", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		if _, ok, err := s.Head(ctx, "n1"); err != nil || ok {
			t.Fatalf("empty head: ok=%v err=%v", ok, err)
		}
		want := fill(t, s, "n1", 25, 7)
		got := scan(t, s, "n1")
		if len(got) != len(want) {
			t.Fatalf("scan: %d entries, want %d", len(got), len(want))
		}
		for i := range want {
			if !sameEntry(got[i], want[i]) {
				t.Fatalf("entry %d round trip:\n got %+v\nwant %+v", i, got[i], want[i])
			}
			if !got[i].Valid() {
				t.Fatalf("entry %d does not verify after round trip", i)
			}
		}
		head, ok, err := s.Head(ctx, "n1")
		if err != nil || !ok || head.Seq != 25 || !sameEntry(head, want[24]) {
			t.Fatalf("head = %+v ok=%v err=%v", head, ok, err)
		}
		nodes, err := s.Nodes(ctx)
		if err != nil || len(nodes) != 1 || nodes[0] != "n1" {
			t.Fatalf("nodes = %v, %v", nodes, err)
		}
		if rep := verify(t, s); !rep.OK() || rep.Nodes[0].Records != 25 {
			t.Fatalf("verify: %+v", rep)
		}
	})

	t.Run("ConflictStoresNothing", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		all := fill(t, s, "n1", 3, 3)
		next := chain.Link("n1", &all[2], SampleEvent(3, base))
		dup := chain.Link("n1", &all[1], SampleEvent(9, base)) // seq 3 again
		if err := s.Append(ctx, []chain.Entry{next, dup}); !errors.Is(err, chain.ErrConflict) {
			t.Fatalf("append duplicate seq: %v, want ErrConflict", err)
		}
		if got := scan(t, s, "n1"); len(got) != 3 {
			t.Fatalf("after refused batch: %d entries, want 3", len(got))
		}
	})

	t.Run("QueryAndPaging", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		fill(t, s, "n1", 40, 40)
		fill(t, s, "n2", 10, 5)
		all, err := s.Query(ctx, chain.Filter{Limit: 1000})
		if err != nil || len(all.Entries) != 50 || all.Next != "" {
			t.Fatalf("query all: %d entries next=%q err=%v", len(all.Entries), all.Next, err)
		}
		for i := 1; i < len(all.Entries); i++ {
			if chain.EncodeCursor(all.Entries[i-1]) >= "" && !mustCursor(t, all.Entries[i-1]).Less(all.Entries[i]) {
				t.Fatalf("query order broken at %d", i)
			}
		}
		f := chain.Filter{Patient: "pat-1", Client: "app-1", Limit: 3}
		var got []chain.Entry
		for pages := 0; ; pages++ {
			p, err := s.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p.Entries...)
			if p.Next == "" {
				break
			}
			if pages > 20 {
				t.Fatal("paging does not end")
			}
			f.After = p.Next
		}
		want := 0
		for _, e := range all.Entries {
			if e.Event.Patient == "pat-1" && e.Event.ClientID == "app-1" {
				want++
			}
		}
		if len(got) != want || want == 0 {
			t.Fatalf("paged filter: %d entries, want %d", len(got), want)
		}
		p, err := s.Query(ctx, chain.Filter{User: "Practitioner/p2", Since: base.Add(10 * time.Second), Until: base.Add(20 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			if e.Event.FHIRUser != "Practitioner/p2" || e.Event.Time.Before(base.Add(10*time.Second).Truncate(time.Microsecond)) || !e.Event.Time.Before(base.Add(20*time.Second)) {
				t.Fatalf("filter by user and time let through %+v", e.Event)
			}
		}
		if len(p.Entries) == 0 {
			t.Fatal("filter by user and time found nothing")
		}
		p, err = s.Query(ctx, chain.Filter{Actions: []audit.Action{audit.ActionLogin}})
		if err != nil || len(p.Entries) != 0 {
			t.Fatalf("filter by absent action: %d, %v", len(p.Entries), err)
		}
		if _, err := s.Query(ctx, chain.Filter{After: "!!not-a-cursor"}); !errors.Is(err, chain.ErrBadCursor) {
			t.Fatalf("bad cursor: %v", err)
		}
	})

	t.Run("TrailGroupCommit", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		sig := Signer{Key: []byte("k")}
		tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "n1", Signer: sig, CheckpointEvery: 500})
		if err != nil {
			t.Fatal(err)
		}
		const workers, each = 32, 40
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					errs <- tr.Record(ctx, SampleEvent(w*each+i, time.Now()))
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := len(scan(t, s, "n1")); got != workers*each {
			t.Fatalf("after sync Record returned: %d durable entries, want %d", got, workers*each)
		}
		if err := tr.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tr.Record(ctx, SampleEvent(0, time.Now())); !errors.Is(err, trail.ErrClosed) {
			t.Fatalf("record after close: %v", err)
		}
		cps, err := s.Checkpoints(ctx, "n1")
		if err != nil || len(cps) < 2 || cps[len(cps)-1].Seq != workers*each {
			t.Fatalf("checkpoints: %+v, %v", cps, err)
		}
		rep, err := chain.Verify(ctx, s, chain.VerifyOptions{CheckSignature: sig.Check})
		if err != nil || !rep.OK() {
			t.Fatalf("verify: %+v %v", rep, err)
		}
		// A new trail continues the same chain.
		tr2, err := trail.New(ctx, trail.Options{Sink: s, Node: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr2.Record(ctx, SampleEvent(1, time.Now())); err != nil {
			t.Fatal(err)
		}
		tr2.Close(ctx)
		if rep := verify(t, s); !rep.OK() || rep.Nodes[0].Records != workers*each+1 {
			t.Fatalf("verify after restart: %+v", rep)
		}
	})

	t.Run("TwoNodesOneSink", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		var wg sync.WaitGroup
		for _, node := range []string{"a", "b"} {
			tr, err := trail.New(ctx, trail.Options{Sink: s, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					if err := tr.Record(ctx, SampleEvent(i, time.Now())); err != nil {
						t.Error(err)
						return
					}
				}
				tr.Close(ctx)
			}()
		}
		wg.Wait()
		rep := verify(t, s)
		if !rep.OK() || len(rep.Nodes) != 2 || rep.Nodes[0].Records != 50 || rep.Nodes[1].Records != 50 {
			t.Fatalf("verify two nodes: %+v", rep)
		}
	})

	if h.Reopen != nil {
		t.Run("Durable", func(t *testing.T) {
			s := h.Open(t)
			want := fill(t, s, "n1", 10, 4)
			ctx := context.Background()
			if err := s.SaveCheckpoint(ctx, chain.Checkpoint{Node: "n1", Seq: 10, Hash: want[9].Hash, Time: base, Signature: "x.y.z"}); err != nil {
				t.Fatal(err)
			}
			s = h.Reopen(t, s)
			t.Cleanup(func() { s.Close() })
			got := scan(t, s, "n1")
			if len(got) != 10 || !sameEntry(got[9], want[9]) {
				t.Fatalf("after reopen: %d entries", len(got))
			}
			cps, err := s.Checkpoints(ctx, "n1")
			if err != nil || len(cps) != 1 || cps[0].Signature != "x.y.z" || cps[0].Seq != 10 || !cps[0].Time.Equal(base.Truncate(time.Microsecond)) {
				t.Fatalf("checkpoints after reopen: %+v, %v", cps, err)
			}
		})
	}

	tamper := []struct {
		name  string
		edit  func(es []chain.Entry) []chain.Entry
		seq   uint64
		kinds []chain.ProblemKind
	}{
		{"Edited", func(es []chain.Entry) []chain.Entry {
			es[4].Event.Patient = "someone-else"
			return es
		}, 5, []chain.ProblemKind{chain.Altered}},
		{"EditedAndRehashed", func(es []chain.Entry) []chain.Entry {
			es[4].Event.UserID = "mallory"
			es[4].Hash = chain.Hash(es[4])
			return es
		}, 5, []chain.ProblemKind{chain.Altered}},
		{"Deleted", func(es []chain.Entry) []chain.Entry {
			return append(es[:6:6], es[7:]...)
		}, 7, []chain.ProblemKind{chain.Removed}},
		{"DeletedAndRenumbered", func(es []chain.Entry) []chain.Entry {
			out := append(es[:6:6], es[7:]...)
			for i := 6; i < len(out); i++ {
				out[i].Seq--
			}
			return out
		}, 7, []chain.ProblemKind{chain.Altered}},
		{"Swapped", func(es []chain.Entry) []chain.Entry {
			es[2], es[3] = es[3], es[2]
			es[2].Seq, es[3].Seq = es[3].Seq, es[2].Seq
			return es
		}, 3, []chain.ProblemKind{chain.Altered, chain.Reordered}},
		{"TailTruncated", func(es []chain.Entry) []chain.Entry {
			return es[:15]
		}, 16, []chain.ProblemKind{chain.Truncated}},
		{"RewrittenConsistently", func(es []chain.Entry) []chain.Entry {
			prev := &es[9]
			for i := 10; i < len(es); i++ {
				es[i].Event.Reason = "forged"
				es[i] = chain.Link("n1", prev, es[i].Event)
				prev = &es[i]
			}
			return es
		}, 11, []chain.ProblemKind{chain.Rewritten}},
	}
	for _, tc := range tamper {
		t.Run("Tamper"+tc.name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			all := fill(t, s, "n1", 20, 6)
			fill(t, s, "n2", 5, 5)
			for _, seq := range []int{10, 20} {
				if err := s.SaveCheckpoint(ctx, chain.Checkpoint{Node: "n1", Seq: uint64(seq), Hash: all[seq-1].Hash, Time: base}); err != nil {
					t.Fatal(err)
				}
			}
			if rep := verify(t, s); !rep.OK() {
				t.Fatalf("untouched chain: %v", rep.Problems())
			}
			h.Rewrite(t, s, "n1", tc.edit(scan(t, s, "n1")))
			rep := verify(t, s)
			probs := rep.Problems()
			if len(probs) != 1 {
				t.Fatalf("problems = %v, want one on node n1", probs)
			}
			p := probs[0]
			ok := false
			for _, k := range tc.kinds {
				ok = ok || p.Kind == k
			}
			if p.Node != "n1" || p.Seq != tc.seq || !ok {
				t.Fatalf("problem = %v, want record %d of kind %v", p, tc.seq, tc.kinds)
			}
		})
	}
}

func mustCursor(t *testing.T, e chain.Entry) chain.Cursor {
	c, err := chain.DecodeCursor(chain.EncodeCursor(e))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sameEntry(a, b chain.Entry) bool {
	return a.Node == b.Node && a.Seq == b.Seq && string(a.Prev) == string(b.Prev) && string(a.Hash) == string(b.Hash) &&
		a.Event.Time.Equal(b.Event.Time) && withoutTime(a.Event) == withoutTime(b.Event)
}

func withoutTime(e audit.Event) audit.Event {
	e.Time = time.Time{}
	return e
}
