package sqlsink

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// The SQLite sink's first layout kept every event field in a column of
// audit_events (the columns PostgreSQL still uses), unique on (node, seq);
// its second kept one row per entry in audit_records (the filtered fields
// as columns, the rest in a body, see record.go). convertV1 and convertV2
// move such tables into blocks; hashes cover the entries' content, not
// their layout, so the chains verify as before.

// convertChunk is how many legacy rows convertV1 reads at a time.
const convertChunk = 1000

// convertV1 copies every row of schema.audit_events (when that table exists)
// into main's blocks inside tx, in (node, seq) order, dropping the old
// table afterwards when drop is set. It returns how many rows it copied.
func convertV1(ctx context.Context, tx *sql.Tx, schema string, drop bool) (int64, error) {
	var tables int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+schema+".sqlite_master WHERE type = 'table' AND name = 'audit_events'").Scan(&tables); err != nil {
		return 0, errf("sqlite", "convert old layout", err)
	}
	if tables == 0 {
		return 0, nil
	}
	var (
		copied int64
		after  *chain.Entry
		nums   = map[string]int64{}
	)
	for {
		batch, err := readV1(ctx, tx, schema, after)
		if err != nil {
			return copied, err
		}
		if len(batch) == 0 {
			break
		}
		for start := 0; start < len(batch); {
			end := start + 1
			for end < len(batch) && batch[end].Node == batch[start].Node {
				end++
			}
			node := batch[start].Node
			num, ok := nums[node]
			if !ok {
				if num, err = assignNode(ctx, tx, "main", node); err != nil {
					return copied, err
				}
				nums[node] = num
			}
			lastID, err := appendBlocks(ctx, tx, nil, num, batch[start:end], false, nil)
			if err != nil {
				return copied, fmt.Errorf("audit sqlite: convert old layout: %w", err)
			}
			if err := setMark(ctx, tx, num, lastID); err != nil {
				return copied, err
			}
			start = end
		}
		copied += int64(len(batch))
		after = &batch[len(batch)-1]
	}
	if drop {
		if _, err := tx.ExecContext(ctx, "DROP TABLE "+schema+".audit_events"); err != nil {
			return copied, errf("sqlite", "convert old layout: drop", err)
		}
	}
	return copied, nil
}

// readV1 reads up to convertChunk legacy rows after the entry after (nil:
// from the start).
func readV1(ctx context.Context, tx *sql.Tx, schema string, after *chain.Entry) ([]chain.Entry, error) {
	q := "SELECT " + columnList + " FROM " + schema + ".audit_events"
	var args []any
	if after != nil {
		q += " WHERE node > ? OR (node = ? AND seq > ?)"
		args = []any{after.Node, after.Node, int64(after.Seq)}
	}
	rows, err := tx.QueryContext(ctx, q+fmt.Sprintf(" ORDER BY node, seq LIMIT %d", convertChunk), args...)
	if err != nil {
		return nil, errf("sqlite", "convert old layout: read", err)
	}
	defer rows.Close()
	var out []chain.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, errf("sqlite", "convert old layout: read", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, errf("sqlite", "convert old layout: read", err)
	}
	return out, nil
}

// recordColumns of the second layout's audit_records, in select order.
const recordColumns = "id, node, time_us, action, outcome, user_id, fhir_user, client_id, patient, hash, body"

// convertV2 moves every row of main.audit_records (when that table exists)
// into blocks inside tx, in rowid order (node by node, each in sequence
// order), and drops the table. A row whose body does not decode was altered
// before the conversion; it becomes a block that never decodes (damagedBlock
// and the old body), so Verify still names it. It returns how many rows it
// moved.
func convertV2(ctx context.Context, tx *sql.Tx) (int64, error) {
	var tables int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name = 'audit_records'").Scan(&tables); err != nil {
		return 0, errf("sqlite", "convert second layout", err)
	}
	if tables == 0 {
		return 0, nil
	}
	var (
		moved int64
		after int64 = math.MinInt64
	)
	for {
		rows, err := readV2(ctx, tx, after)
		if err != nil {
			return moved, err
		}
		if len(rows) == 0 {
			break
		}
		for start := 0; start < len(rows); {
			end := start + 1
			for end < len(rows) && rows[end].num == rows[start].num && rows[end].damaged == nil && rows[start].damaged == nil {
				end++
			}
			r := rows[start]
			if r.damaged != nil {
				id, err := rowID(r.num, r.e.Seq)
				if err != nil {
					return moved, fmt.Errorf("audit sqlite: convert second layout: %w", err)
				}
				if _, err := tx.ExecContext(ctx, insertBlockSQL, id, int64(r.e.Seq), micros(&r.e), append([]byte{damagedBlock}, r.damaged...)); err != nil {
					return moved, errf("sqlite", "convert second layout", err)
				}
				if err := setMark(ctx, tx, r.num, id); err != nil {
					return moved, err
				}
			} else {
				es := make([]chain.Entry, 0, end-start)
				for _, r := range rows[start:end] {
					es = append(es, r.e)
				}
				lastID, err := appendBlocks(ctx, tx, nil, r.num, es, false, nil)
				if err != nil {
					return moved, fmt.Errorf("audit sqlite: convert second layout: %w", err)
				}
				if err := setMark(ctx, tx, r.num, lastID); err != nil {
					return moved, err
				}
			}
			start = end
		}
		moved += int64(len(rows))
		after = rows[len(rows)-1].id
	}
	if _, err := tx.ExecContext(ctx, "DROP TABLE main.audit_records"); err != nil {
		return moved, errf("sqlite", "convert second layout: drop", err)
	}
	return moved, nil
}

// v2Row is one row of audit_records: its entry, and its raw body when that
// does not decode.
type v2Row struct {
	id, num int64
	e       chain.Entry
	damaged []byte
}

// readV2 reads up to convertChunk rows of audit_records after rowid after.
func readV2(ctx context.Context, tx *sql.Tx, after int64) ([]v2Row, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+recordColumns+" FROM main.audit_records WHERE id > ? ORDER BY id LIMIT "+strconv.Itoa(convertChunk), after)
	if err != nil {
		return nil, errf("sqlite", "convert second layout: read", err)
	}
	defer rows.Close()
	var out []v2Row
	for rows.Next() {
		var r v2Row
		var us int64
		var action, outcome string
		var body []byte
		ev := &r.e.Event
		if err := rows.Scan(&r.id, &r.e.Node, &us, &action, &outcome, &ev.UserID, &ev.FHIRUser, &ev.ClientID, &ev.Patient, &r.e.Hash, &body); err != nil {
			return nil, errf("sqlite", "convert second layout: read", err)
		}
		r.num, r.e.Seq = r.id>>seqBits, seqOf(r.id)
		ev.Time = microsTime(us)
		ev.Action, ev.Outcome = audit.Action(action), audit.Outcome(outcome)
		if err := decodeBody(body, &r.e); err != nil {
			r.damaged = body
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, errf("sqlite", "convert second layout: read", err)
	}
	return out, nil
}
