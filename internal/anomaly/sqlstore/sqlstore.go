// Package sqlstore is an anomaly.Store in the main store's database: the
// SQLite file of a single node ({data_dir}/fhirgate.db) or PostgreSQL, so
// that throttles and suspensions survive a restart and, on PostgreSQL, are
// enforced by every node (each detector re-reads the in-force set every few
// seconds).
//
// Anomalies are rows of the table anomalies: times are integer unix
// microseconds UTC (0 when unset), the subject is two columns (kind, id).
// Each Add also deletes the anomalies that ended (were recorded, cleared or
// expired) more than anomaly.DefaultRetention before it; one in force is
// never deleted.
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
)

// columns are the anomalies columns every query reads and Add writes, in
// the order of scanRow and addArgs.
const columns = "id, rule, action, subject_kind, subject_id, client_id, user_id, ip, detail, raised_us, until_us, cleared_us, cleared_by"

// db is what the store needs of a dialect: statements written with ?
// placeholders (rebound for PostgreSQL).
type db interface {
	// exec runs a statement and returns the rows it changed.
	exec(ctx context.Context, q string, args ...any) (int64, error)
	// query runs q and calls each for every row with its Scan.
	query(ctx context.Context, q string, args []any, each func(scan func(...any) error) error) error
}

// core implements anomaly.Store on a db; SQLite and Postgres embed it.
type core struct {
	db   db
	name string // "sqlite" or "postgres", for errors
}

func (c *core) errf(op string, err error) error {
	return fmt.Errorf("anomaly %s: %s: %w", c.name, op, err)
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func microsTime(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func addArgs(a *anomaly.Anomaly) []any {
	return []any{a.ID, string(a.Rule), string(a.Action), string(a.Subject.Kind), a.Subject.ID, a.ClientID, a.UserID,
		a.IP, a.Detail, micros(a.RaisedAt), micros(a.Until), micros(a.ClearedAt), a.ClearedBy}
}

func scanRow(scan func(...any) error) (anomaly.Anomaly, error) {
	var (
		a                          anomaly.Anomaly
		rule, action, kind         string
		raised, until, clearedTime int64
	)
	err := scan(&a.ID, &rule, &action, &kind, &a.Subject.ID, &a.ClientID, &a.UserID, &a.IP, &a.Detail,
		&raised, &until, &clearedTime, &a.ClearedBy)
	if err != nil {
		return a, err
	}
	a.Rule, a.Action, a.Subject.Kind = anomaly.Rule(rule), anomaly.Action(action), anomaly.SubjectKind(kind)
	a.RaisedAt, a.Until, a.ClearedAt = microsTime(raised), microsTime(until), microsTime(clearedTime)
	return a, nil
}

// collect runs q and returns its rows as anomalies.
func (c *core) collect(ctx context.Context, q string, args ...any) ([]anomaly.Anomaly, error) {
	var out []anomaly.Anomaly
	err := c.db.query(ctx, q, args, func(scan func(...any) error) error {
		a, err := scanRow(scan)
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// Add implements anomaly.Store.
func (c *core) Add(ctx context.Context, a *anomaly.Anomaly) error {
	if a == nil || a.ID == "" {
		return c.errf("add", errors.New("anomaly without an id"))
	}
	q := "INSERT INTO anomalies (" + columns + ") VALUES (?" + strings.Repeat(", ?", 12) + ")"
	if _, err := c.db.exec(ctx, q, addArgs(a)...); err != nil {
		return c.errf("add "+a.ID, err)
	}
	// Anomalies are rare, so pruning on each Add keeps the table bounded
	// without a timer. The new anomaly is stored either way: a failed
	// prune is retried by the next Add.
	_ = c.Prune(ctx, a.RaisedAt.Add(-anomaly.DefaultRetention))
	return nil
}

// Prune deletes the anomalies that ended before cutoff: a record raised
// (and, if cleared, cleared) before it, a throttle or suspension cleared
// before it, or one whose Until passed before it. An anomaly in force is
// never deleted.
func (c *core) Prune(ctx context.Context, cutoff time.Time) error {
	cut := cutoff.UnixMicro()
	_, err := c.db.exec(ctx, `DELETE FROM anomalies WHERE
		(action = 'record' AND raised_us < ? AND cleared_us < ?)
		OR (cleared_us <> 0 AND cleared_us < ?)
		OR (until_us <> 0 AND until_us < ?)`, cut, cut, cut, cut)
	if err != nil {
		return c.errf("prune", err)
	}
	return nil
}

// List implements anomaly.Store: newest raised first.
func (c *core) List(ctx context.Context, opts anomaly.ListOptions) ([]anomaly.Anomaly, error) {
	if opts.Limit <= 0 {
		opts.Limit = anomaly.DefaultListLimit
	}
	var (
		where []string
		args  []any
	)
	if !opts.IncludeCleared {
		where = append(where, "cleared_us = 0")
	}
	if opts.Subject.ID != "" {
		where = append(where, "subject_kind = ? AND subject_id = ?")
		args = append(args, string(opts.Subject.Kind), opts.Subject.ID)
	}
	q := "SELECT " + columns + " FROM anomalies"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY raised_us DESC, seq DESC LIMIT " + strconv.Itoa(opts.Limit)
	out, err := c.collect(ctx, q, args...)
	if err != nil {
		return nil, c.errf("list", err)
	}
	return out, nil
}

// Active implements anomaly.Store: uncleared throttles and suspensions
// whose end, if any, is after now.
func (c *core) Active(ctx context.Context, now time.Time) ([]anomaly.Anomaly, error) {
	out, err := c.collect(ctx, "SELECT "+columns+" FROM anomalies WHERE cleared_us = 0 AND action <> ?"+
		" AND (until_us = 0 OR until_us > ?) ORDER BY raised_us, seq", string(anomaly.ActionRecord), now.UnixMicro())
	if err != nil {
		return nil, c.errf("active", err)
	}
	return out, nil
}

// Clear implements anomaly.Store; clearing a cleared anomaly keeps the
// first clear.
func (c *core) Clear(ctx context.Context, id, by string, now time.Time) (*anomaly.Anomaly, error) {
	if _, err := c.db.exec(ctx, "UPDATE anomalies SET cleared_us = ?, cleared_by = ? WHERE id = ? AND cleared_us = 0",
		micros(now), by, id); err != nil {
		return nil, c.errf("clear "+id, err)
	}
	out, err := c.collect(ctx, "SELECT "+columns+" FROM anomalies WHERE id = ?", id)
	if err != nil {
		return nil, c.errf("clear "+id, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %q", anomaly.ErrNotFound, id)
	}
	return &out[0], nil
}

// ClearSubject implements anomaly.Store.
func (c *core) ClearSubject(ctx context.Context, s anomaly.Subject, by string, now time.Time) ([]anomaly.Anomaly, error) {
	out, err := c.collect(ctx, "UPDATE anomalies SET cleared_us = ?, cleared_by = ?"+
		" WHERE subject_kind = ? AND subject_id = ? AND cleared_us = 0 RETURNING "+columns,
		micros(now), by, string(s.Kind), s.ID)
	if err != nil {
		return nil, c.errf("clear "+s.String(), err)
	}
	return out, nil
}
