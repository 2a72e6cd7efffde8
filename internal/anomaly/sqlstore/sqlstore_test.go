package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/anomaly/anomalytest"
)

// DSNEnv names the PostgreSQL test database; its tests are skipped when unset.
const DSNEnv = "FHIRGATE_TEST_POSTGRES_DSN"

var schemaSeq atomic.Int64

func openSQLite(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newSchema returns a fresh schema name dropped at test end.
func newSchema(t *testing.T) (dsn, schema string) {
	t.Helper()
	dsn = os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL anomaly store (set it to a PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", DSNEnv)
	}
	schema = fmt.Sprintf("anomaly_t%d_%d", time.Now().UnixNano()%1e12, schemaSeq.Add(1))
	t.Cleanup(func() {
		s, err := OpenPostgres(context.Background(), dsn, "")
		if err != nil {
			t.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer s.Close()
		if _, err := s.pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	return dsn, schema
}

func openPostgres(t *testing.T, dsn, schema string) *Postgres {
	t.Helper()
	s, err := OpenPostgres(context.Background(), dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSQLiteStoreSuite(t *testing.T) {
	anomalytest.RunStore(t, func(t *testing.T) anomaly.Store {
		s := openSQLite(t, filepath.Join(t.TempDir(), "fhirgate.db"))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestPostgresStoreSuite(t *testing.T) {
	if os.Getenv(DSNEnv) == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL anomaly store", DSNEnv)
	}
	anomalytest.RunStore(t, func(t *testing.T) anomaly.Store {
		dsn, schema := newSchema(t)
		return openPostgres(t, dsn, schema)
	})
}

func suspension(id string, raised time.Time) *anomaly.Anomaly {
	return &anomaly.Anomaly{
		ID: id, Rule: anomaly.RuleReplay, Action: anomaly.ActionSuspend,
		Subject: anomaly.Subject{Kind: anomaly.SubjectClient, ID: "evil"}, ClientID: "evil",
		IP: "192.0.2.1", Detail: "replayed DPoP proof", RaisedAt: raised,
	}
}

// A suspension outlives the process: reopening the file finds it in force,
// with every field as stored, and a clear made before a restart stays made.
func TestSQLiteSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "fhirgate.db")
	now := time.Now()
	s := openSQLite(t, path)
	a := suspension("keep", now)
	a.UserID, a.Until = "u1", now.Add(time.Hour)
	if err := s.Add(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, suspension("lift", now)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Clear(ctx, "lift", "admin:ops", now); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSQLite(t, path) // the DDL runs again on an existing table
	defer s.Close()
	active, err := s.Active(ctx, now.Add(time.Minute))
	if err != nil || len(active) != 1 {
		t.Fatalf("Active after reopen = %+v, %v; want the one uncleared suspension", active, err)
	}
	got := active[0]
	want := *a
	want.RaisedAt, want.Until = now.Truncate(time.Microsecond).UTC(), a.Until.Truncate(time.Microsecond).UTC()
	if got != want {
		t.Fatalf("after reopen:\n got %+v\nwant %+v", got, want)
	}
	l, err := s.List(ctx, anomaly.ListOptions{IncludeCleared: true})
	if err != nil || len(l) != 2 {
		t.Fatalf("List = %+v, %v", l, err)
	}
	for _, x := range l {
		if x.ID == "lift" && (x.ClearedBy != "admin:ops" || x.ClearedAt.IsZero()) {
			t.Fatalf("clear lost on reopen: %+v", x)
		}
	}
	if active, _ := s.Active(ctx, now.Add(2*time.Hour)); len(active) != 0 {
		t.Fatalf("suspension past its end still active: %+v", active)
	}
}

// Adding an id twice is refused rather than overwriting the first anomaly
// (which could lift its suspension).
func TestSQLiteDuplicateID(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "fhirgate.db"))
	defer s.Close()
	if err := s.Add(ctx, suspension("x", time.Now())); err != nil {
		t.Fatal(err)
	}
	rec := suspension("x", time.Now())
	rec.Action = anomaly.ActionRecord
	if err := s.Add(ctx, rec); err == nil {
		t.Fatal("second Add with the same id succeeded")
	}
	if active, _ := s.Active(ctx, time.Now()); len(active) != 1 || active[0].Action != anomaly.ActionSuspend {
		t.Fatalf("Active = %+v, want the first suspension", active)
	}
	if err := s.Add(ctx, &anomaly.Anomaly{}); err == nil {
		t.Fatal("Add without an id succeeded")
	}
}

// The subject filter matches kind and id, so a user and a client with the
// same id are different subjects; and a clear of an unknown id says so.
func TestSQLiteSubjectKind(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "fhirgate.db"))
	defer s.Close()
	now := time.Now()
	c := suspension("c", now)
	u := suspension("u", now.Add(time.Second))
	u.Subject = anomaly.Subject{Kind: anomaly.SubjectUser, ID: "evil"}
	for _, a := range []*anomaly.Anomaly{c, u} {
		if err := s.Add(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := s.List(ctx, anomaly.ListOptions{Subject: u.Subject}); len(l) != 1 || l[0].ID != "u" {
		t.Fatalf("List(user:evil) = %+v", l)
	}
	cleared, err := s.ClearSubject(ctx, c.Subject, "admin", now)
	if err != nil || len(cleared) != 1 || cleared[0].ID != "c" || cleared[0].ClearedBy != "admin" {
		t.Fatalf("ClearSubject(client:evil) = %+v, %v", cleared, err)
	}
	if active, _ := s.Active(ctx, now); len(active) != 1 || active[0].ID != "u" {
		t.Fatalf("Active = %+v, want the user's suspension only", active)
	}
	if _, err := s.Clear(ctx, "nope'; DROP TABLE anomalies; --", "admin", now); !errors.Is(err, anomaly.ErrNotFound) {
		t.Fatalf("Clear(unknown) = %v", err)
	}
}

func TestOpenSQLiteRefusesEmptyPath(t *testing.T) {
	if _, err := OpenSQLite(context.Background(), ""); err == nil {
		t.Fatal("OpenSQLite(\"\") succeeded")
	}
}

// Two nodes on one PostgreSQL schema see each other's anomalies and clears.
func TestPostgresTwoStoresShare(t *testing.T) {
	ctx := context.Background()
	dsn, schema := newSchema(t)
	n1, n2 := openPostgres(t, dsn, schema), openPostgres(t, dsn, schema)
	now := time.Now()
	if err := n1.Add(ctx, suspension("from-n1", now)); err != nil {
		t.Fatal(err)
	}
	active, err := n2.Active(ctx, now)
	if err != nil || len(active) != 1 || active[0].ID != "from-n1" {
		t.Fatalf("node 2 Active = %+v, %v; want node 1's suspension", active, err)
	}
	if _, err := n2.Clear(ctx, "from-n1", "admin", now); err != nil {
		t.Fatal(err)
	}
	if active, _ := n1.Active(ctx, now); len(active) != 0 {
		t.Fatalf("node 1 still sees a suspension node 2 cleared: %+v", active)
	}
	// Another schema is another deployment: it sees nothing.
	_, other := newSchema(t)
	if l, err := openPostgres(t, dsn, other).List(ctx, anomaly.ListOptions{IncludeCleared: true}); err != nil || len(l) != 0 {
		t.Fatalf("other schema lists %+v, %v", l, err)
	}
}

func TestOpenPostgresRefusesBadSchema(t *testing.T) {
	_, err := OpenPostgres(context.Background(), "postgres://127.0.0.1:1/x", "x; DROP TABLE y")
	if err == nil || !strings.Contains(err.Error(), "invalid schema name") {
		t.Fatalf("OpenPostgres(bad schema) = %v", err)
	}
}

// TestPruneOnAdd: adding an anomaly deletes those that ended more than
// anomaly.DefaultRetention before it, and keeps every one that ended later
// or is still in force, however old.
func TestPruneOnAdd(t *testing.T) {
	stores := map[string]func(t *testing.T) anomaly.Store{
		"sqlite": func(t *testing.T) anomaly.Store {
			s := openSQLite(t, filepath.Join(t.TempDir(), "fhirgate.db"))
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
		"postgres": func(t *testing.T) anomaly.Store {
			dsn, schema := newSchema(t)
			return openPostgres(t, dsn, schema)
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			now := time.Now().UTC().Truncate(time.Microsecond)
			day := 24 * time.Hour
			old := now.Add(-anomaly.DefaultRetention - day) // ended before the cutoff
			recent := now.Add(-anomaly.DefaultRetention + day)
			add := func(id string, action anomaly.Action, raised, until time.Time) {
				a := suspension(id, raised)
				a.Action, a.Until = action, until
				if err := s.Add(ctx, a); err != nil {
					t.Fatal(err)
				}
			}
			add("old-record", anomaly.ActionRecord, old, time.Time{})
			add("recent-record", anomaly.ActionRecord, recent, time.Time{})
			add("old-throttle", anomaly.ActionThrottle, old.Add(-day), old)
			add("throttle-ended-recently", anomaly.ActionThrottle, old, recent)
			add("old-suspension-in-force", anomaly.ActionSuspend, old.Add(-100*day), time.Time{})
			add("old-suspension-cleared-old", anomaly.ActionSuspend, old.Add(-day), time.Time{})
			add("old-suspension-cleared-recently", anomaly.ActionSuspend, old.Add(-day), time.Time{})
			if _, err := s.Clear(ctx, "old-suspension-cleared-old", "admin", old); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Clear(ctx, "old-suspension-cleared-recently", "admin", recent); err != nil {
				t.Fatal(err)
			}
			add("new", anomaly.ActionRecord, now, time.Time{})

			got, err := s.List(ctx, anomaly.ListOptions{IncludeCleared: true, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			kept := map[string]bool{}
			for _, a := range got {
				kept[a.ID] = true
			}
			for id, want := range map[string]bool{
				"old-record": false, "recent-record": true, "old-throttle": false,
				"throttle-ended-recently": true, "old-suspension-in-force": true,
				"old-suspension-cleared-old": false, "old-suspension-cleared-recently": true, "new": true,
			} {
				if kept[id] != want {
					t.Errorf("%s kept = %v, want %v", id, kept[id], want)
				}
			}
		})
	}
}
