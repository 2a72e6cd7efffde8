// Package anomalytest is the conformance suite every anomaly.Store runs.
package anomalytest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
)

// RunStore runs the suite against the empty stores newStore returns.
func RunStore(t *testing.T, newStore func(t *testing.T) anomaly.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	mk := func(i int, action anomaly.Action, kind anomaly.SubjectKind, id string, until time.Time) *anomaly.Anomaly {
		return &anomaly.Anomaly{
			ID: fmt.Sprintf("a%03d-%d", i, time.Now().UnixNano()), Rule: anomaly.RuleReplay, Action: action,
			Subject: anomaly.Subject{Kind: kind, ID: id}, ClientID: "c", Detail: "d",
			RaisedAt: t0.Add(time.Duration(i) * time.Second), Until: until,
		}
	}

	t.Run("AddListActive", func(t *testing.T) {
		s := newStore(t)
		rec := mk(1, anomaly.ActionRecord, anomaly.SubjectClient, "c1", time.Time{})
		thr := mk(2, anomaly.ActionThrottle, anomaly.SubjectClient, "c1", t0.Add(time.Hour))
		sus := mk(3, anomaly.ActionSuspend, anomaly.SubjectUser, "u1", time.Time{})
		for _, a := range []*anomaly.Anomaly{rec, thr, sus} {
			if err := s.Add(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.List(ctx, anomaly.ListOptions{})
		if err != nil || len(all) != 3 || all[0].ID != sus.ID || all[2].ID != rec.ID {
			t.Fatalf("List = %v, %v; want newest first", ids(all), err)
		}
		if got := all[1]; got.Until != thr.Until || got.Subject != thr.Subject || got.Action != thr.Action || !got.RaisedAt.Equal(thr.RaisedAt) {
			t.Fatalf("round trip: %+v, want %+v", got, *thr)
		}
		if l, _ := s.List(ctx, anomaly.ListOptions{Limit: 2}); len(l) != 2 {
			t.Fatalf("Limit 2 gave %d", len(l))
		}
		if l, _ := s.List(ctx, anomaly.ListOptions{Subject: anomaly.Subject{Kind: anomaly.SubjectClient, ID: "c1"}}); len(l) != 2 {
			t.Fatalf("by subject: %v", ids(l))
		}
		active, err := s.Active(ctx, t0.Add(time.Minute))
		if err != nil || len(active) != 2 {
			t.Fatalf("Active = %v, %v; want the throttle and the suspension", ids(active), err)
		}
		if active, _ := s.Active(ctx, t0.Add(2*time.Hour)); len(active) != 1 || active[0].ID != sus.ID {
			t.Fatalf("Active after the throttle ended = %v", ids(active))
		}
	})

	t.Run("Clear", func(t *testing.T) {
		s := newStore(t)
		sus := mk(1, anomaly.ActionSuspend, anomaly.SubjectUser, "u1", time.Time{})
		_ = s.Add(ctx, sus)
		if _, err := s.Clear(ctx, "missing", "admin", t0); !errors.Is(err, anomaly.ErrNotFound) {
			t.Fatalf("Clear(missing) = %v, want ErrNotFound", err)
		}
		a, err := s.Clear(ctx, sus.ID, "admin:x", t0.Add(time.Minute))
		if err != nil || a.ClearedBy != "admin:x" || !a.ClearedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("Clear = %+v, %v", a, err)
		}
		if active, _ := s.Active(ctx, t0.Add(time.Hour)); len(active) != 0 {
			t.Fatalf("cleared anomaly still active: %v", ids(active))
		}
		if l, _ := s.List(ctx, anomaly.ListOptions{}); len(l) != 0 {
			t.Fatalf("cleared anomaly listed without IncludeCleared: %v", ids(l))
		}
		if l, _ := s.List(ctx, anomaly.ListOptions{IncludeCleared: true}); len(l) != 1 || l[0].ClearedAt.IsZero() {
			t.Fatalf("IncludeCleared: %+v", l)
		}
		// Clearing twice keeps the first clear.
		if a, err := s.Clear(ctx, sus.ID, "other", t0.Add(time.Hour)); err != nil || a.ClearedBy != "admin:x" {
			t.Fatalf("second Clear = %+v, %v", a, err)
		}
	})

	t.Run("ClearSubject", func(t *testing.T) {
		s := newStore(t)
		for i := range 3 {
			_ = s.Add(ctx, mk(i, anomaly.ActionSuspend, anomaly.SubjectClient, "evil", time.Time{}))
		}
		other := mk(9, anomaly.ActionSuspend, anomaly.SubjectClient, "good", time.Time{})
		_ = s.Add(ctx, other)
		cleared, err := s.ClearSubject(ctx, anomaly.Subject{Kind: anomaly.SubjectClient, ID: "evil"}, "admin", t0)
		if err != nil || len(cleared) != 3 {
			t.Fatalf("ClearSubject = %v, %v", ids(cleared), err)
		}
		if active, _ := s.Active(ctx, t0); len(active) != 1 || active[0].ID != other.ID {
			t.Fatalf("Active = %v, want only the other subject's", ids(active))
		}
		if again, err := s.ClearSubject(ctx, anomaly.Subject{Kind: anomaly.SubjectClient, ID: "evil"}, "admin", t0); err != nil || len(again) != 0 {
			t.Fatalf("second ClearSubject = %v, %v", ids(again), err)
		}
	})
}

func ids(as []anomaly.Anomaly) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}
