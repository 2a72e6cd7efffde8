package sqlsink

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// The SQLite sink's first layout kept every event field in a column of
// audit_events (the columns PostgreSQL still uses), unique on (node, seq).
// convertV1 moves such a table into audit_records; hashes cover the entries'
// content, not their layout, so the chains verify as before.

// convertChunk is how many legacy rows convertV1 reads at a time.
const convertChunk = 1000

// convertV1 copies every row of schema.audit_events (when that table exists)
// into main.audit_records inside tx, in (node, seq) order, dropping the old
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
			if err := insertRecords(ctx, tx, nil, num, batch[start:end]); err != nil {
				return copied, fmt.Errorf("audit sqlite: convert old layout: %w", err)
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
