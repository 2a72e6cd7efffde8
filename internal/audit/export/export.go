package export

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// Format is an export format.
type Format string

// Formats.
const (
	FHIR       Format = "fhir"        // NDJSON, one AuditEvent per line
	FHIRBundle Format = "fhir-bundle" // one Bundle (type collection) of AuditEvents
	JSON       Format = "json"        // NDJSON, one chain.JSONEntry per line
)

// ErrFormat is returned for an unknown format.
var ErrFormat = errors.New("audit export: format must be fhir, fhir-bundle or json")

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FHIR, FHIRBundle, JSON:
		return f, nil
	}
	return "", fmt.Errorf("%w: got %q", ErrFormat, s)
}

// ContentType is the media type of a format.
func (f Format) ContentType() string {
	switch f {
	case FHIRBundle:
		return "application/fhir+json"
	case FHIR:
		return "application/fhir+ndjson"
	}
	return "application/x-ndjson"
}

// Querier is the query side of a chain.Sink.
type Querier interface {
	Query(ctx context.Context, f chain.Filter) (chain.Page, error)
}

// Write streams every entry matching f (all pages; f.After and f.Limit
// only set the page size and starting point) to w in format, and returns the
// number written.
func Write(ctx context.Context, w io.Writer, q Querier, f chain.Filter, format Format, now time.Time) (int, error) {
	if _, err := ParseFormat(string(format)); err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	if format == FHIRBundle {
		fmt.Fprintf(bw, `{"resourceType":"Bundle","type":"collection","timestamp":%q`, now.UTC().Format(time.RFC3339))
	}
	f.Limit = chain.MaxLimit
	for {
		page, err := q.Query(ctx, f)
		if err != nil {
			return n, fmt.Errorf("audit export: %w", err)
		}
		for _, e := range page.Entries {
			var v any
			switch format {
			case JSON:
				v = chain.ToJSON(e)
			case FHIR:
				v = ToAuditEvent(e)
			case FHIRBundle:
				v = struct {
					FullURL  string     `json:"fullUrl"`
					Resource AuditEvent `json:"resource"`
				}{"urn:fhirgate:audit:" + ResourceID(e), ToAuditEvent(e)}
				if n == 0 {
					bw.WriteString(`,"entry":[`) // FHIR JSON has no empty arrays
				} else {
					bw.WriteByte(',')
				}
			}
			b, err := json.Marshal(v)
			if err != nil {
				return n, fmt.Errorf("audit export: %w", err)
			}
			bw.Write(b)
			if format != FHIRBundle {
				bw.WriteByte('\n')
			}
			n++
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	if format == FHIRBundle {
		if n > 0 {
			bw.WriteByte(']')
		}
		bw.WriteString("}\n")
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("audit export: %w", err)
	}
	return n, nil
}
