package sqlite

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"
)

// micros encodes t as unix microseconds, the zero time as NULL.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// timeDest scans a micros column back into a UTC time.Time.
type timeDest struct{ p *time.Time }

func ts(p *time.Time) timeDest { return timeDest{p} }

// Scan implements sql.Scanner.
func (d timeDest) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*d.p = time.Time{}
	case int64:
		*d.p = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("time column holds %T", src)
	}
	return nil
}

// jsonText encodes v as JSON text (a nil slice as "null", so nil and empty
// slices round-trip distinctly).
func jsonText(v any) (driver.Value, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// jsonDest scans JSON text into p.
type jsonDest struct{ p any }

func js(p any) jsonDest { return jsonDest{p} }

// Scan implements sql.Scanner.
func (d jsonDest) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		return nil
	case string:
		return json.Unmarshal([]byte(v), d.p)
	case []byte:
		return json.Unmarshal(v, d.p)
	default:
		return fmt.Errorf("JSON column holds %T", src)
	}
}

// bytesDest scans a BLOB, keeping NULL as nil and copying the driver buffer.
type bytesDest struct{ p *[]byte }

func bs(p *[]byte) bytesDest { return bytesDest{p} }

// Scan implements sql.Scanner.
func (d bytesDest) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*d.p = nil
	case []byte:
		*d.p = append([]byte(nil), v...)
	case string:
		*d.p = []byte(v)
	default:
		return fmt.Errorf("blob column holds %T", src)
	}
	return nil
}

// blob binds b, nil as NULL.
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// expired reports whether a record with lifetime ending at exp is past it at
// now. The lifetime is [created, exp): at exp the record is expired. A zero
// exp counts as expired, so a record created without a lifetime fails closed.
func expired(now, exp time.Time) bool {
	return exp.IsZero() || !now.Before(exp)
}
