// Package sqlsink stores the audit trail in SQL tables: SQLite (OpenSQLite,
// a WAL file of its own beside the main store's, written with
// synchronous=FULL so a commit is on disk when Append returns; AdoptSQLite
// moves a trail an earlier version kept in the main store's file) and
// PostgreSQL (OpenPostgres, pgx v5, batches written with COPY in one
// transaction). Both create their tables with idempotent DDL when opened.
//
// On PostgreSQL each entry is one row of audit_events with a column per
// field, unique on (node, seq); SQLite keeps runs of a node's entries in
// blocks, a row each in audit_blocks with a patient index beside it (see
// block.go), which costs its writer far less per event. Checkpoints
// are rows of audit_checkpoints. Times are stored as integer unix
// microseconds (UTC) so both dialects share one encoding.
package sqlsink

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// columns of audit_events in insert and select order (PostgreSQL, and the
// first SQLite layout).
var columns = []string{
	"node", "seq", "prev", "hash", "time_us", "action", "outcome", "reason",
	"user_id", "fhir_user", "client_id", "source_ip", "user_agent", "patient", "scope",
	"token_id", "request_id", "interaction", "resource_type", "resource_id",
	"entries_filtered", "allowed_by", "binding",
}

var columnList = strings.Join(columns, ", ")

func entryArgs(e chain.Entry) []any {
	ev := e.Event
	us := int64(0)
	if !ev.Time.IsZero() {
		us = ev.Time.UnixMicro()
	}
	return []any{
		e.Node, int64(e.Seq), e.Prev, e.Hash, us, string(ev.Action), string(ev.Outcome), ev.Reason,
		ev.UserID, ev.FHIRUser, ev.ClientID, ev.SourceIP, ev.UserAgent, ev.Patient, ev.Scope,
		ev.TokenID, ev.RequestID, ev.Interaction, ev.ResourceType, ev.ResourceID,
		int64(ev.EntriesFiltered), ev.AllowedBy, string(ev.Binding),
	}
}

type scanner interface{ Scan(dest ...any) error }

func scanEntry(sc scanner) (chain.Entry, error) {
	var e chain.Entry
	var seq, us, filtered int64
	var action, outcome, binding string
	ev := &e.Event
	err := sc.Scan(&e.Node, &seq, &e.Prev, &e.Hash, &us, &action, &outcome, &ev.Reason,
		&ev.UserID, &ev.FHIRUser, &ev.ClientID, &ev.SourceIP, &ev.UserAgent, &ev.Patient, &ev.Scope,
		&ev.TokenID, &ev.RequestID, &ev.Interaction, &ev.ResourceType, &ev.ResourceID,
		&filtered, &ev.AllowedBy, &binding)
	if err != nil {
		return e, err
	}
	e.Seq, ev.EntriesFiltered = uint64(seq), int(filtered)
	ev.Action, ev.Outcome, ev.Binding = audit.Action(action), audit.Outcome(outcome), audit.Binding(binding)
	ev.Time = microsTime(us)
	return e, nil
}

// where builds the WHERE clause and arguments for f; ph returns the n-th
// (1-based) placeholder of the dialect and seq is the SQL expression of an
// entry's sequence number.
func where(f chain.Filter, ph func(n int) string, seq string) (string, []any, error) {
	var conds []string
	var args []any
	add := func(cond string, vals ...any) {
		for range vals {
			args = append(args, nil)
			cond = strings.Replace(cond, "?", ph(len(args)), 1)
		}
		copy(args[len(args)-len(vals):], vals)
		conds = append(conds, cond)
	}
	if f.Patient != "" {
		add("patient = ?", f.Patient)
	}
	if f.User != "" {
		add("(user_id = ? OR fhir_user = ?)", f.User, f.User)
	}
	if f.Client != "" {
		add("client_id = ?", f.Client)
	}
	if f.Outcome != "" {
		add("outcome = ?", string(f.Outcome))
	}
	if len(f.Actions) > 0 {
		vals := make([]any, len(f.Actions))
		marks := make([]string, len(f.Actions))
		for i, a := range f.Actions {
			vals[i], marks[i] = string(a), "?"
		}
		add("action IN ("+strings.Join(marks, ", ")+")", vals...)
	}
	if !f.Since.IsZero() {
		add("time_us >= ?", f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add("time_us < ?", f.Until.UnixMicro())
	}
	if f.After != "" {
		c, err := chain.DecodeCursor(f.After)
		if err != nil {
			return "", nil, err
		}
		add("(time_us > ? OR (time_us = ? AND (node > ? OR (node = ? AND "+seq+" > ?))))",
			c.Micros, c.Micros, c.Node, c.Node, int64(c.Seq))
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

func querySQL(f chain.Filter, ph func(int) string) (string, []any, error) {
	w, args, err := where(f, ph, "seq")
	if err != nil {
		return "", nil, err
	}
	q := "SELECT " + columnList + " FROM audit_events" + w +
		" ORDER BY time_us, node, seq LIMIT " + strconv.Itoa(f.Limit+1)
	return q, args, nil
}

// page turns up to limit+1 rows into a page.
func page(rows []chain.Entry, limit int) chain.Page {
	if len(rows) <= limit {
		return chain.Page{Entries: rows}
	}
	rows = rows[:limit]
	return chain.Page{Entries: rows, Next: chain.EncodeCursor(rows[limit-1])}
}

func errf(dialect, op string, err error) error {
	return fmt.Errorf("audit %s: %s: %w", dialect, op, err)
}

func microsTime(us int64) (t time.Time) {
	if us == 0 {
		return t
	}
	return time.UnixMicro(us).UTC()
}
