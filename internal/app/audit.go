package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/export"
	"github.com/fhirgate/fhirgate/internal/audit/filesink"
	"github.com/fhirgate/fhirgate/internal/audit/sqlsink"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
	"github.com/fhirgate/fhirgate/internal/auditapi"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
)

// ErrAuditLogOnly is returned when an audit command needs a durable sink but
// audit.sink is log.
var ErrAuditLogOnly = errors.New("audit.sink is log: there is no durable audit trail to read")

// AuditNodeID is this node's chain name: audit.node_id, else the host name.
func AuditNodeID(cfg *config.Config) string {
	if cfg.Audit.NodeID != "" {
		return cfg.Audit.NodeID
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	return filesinkSafe(h)
}

// filesinkSafe maps a host name to a valid node id.
func filesinkSafe(h string) string {
	out := []byte(h)
	for i, c := range out {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || (i > 0 && (c == '.' || c == '-'))
		if !ok {
			out[i] = '_'
		}
	}
	if len(out) > 64 {
		out = out[:64]
	}
	return string(out)
}

// OpenAuditSink opens the configured durable sink: tables in their own SQLite
// file ({data_dir}/audit.db) or beside the main PostgreSQL store, or
// JSON-lines files.
func OpenAuditSink(ctx context.Context, cfg *config.Config) (chain.Sink, error) {
	switch cfg.Audit.Sink {
	case config.AuditSinkLog:
		return nil, ErrAuditLogOnly
	case config.AuditSinkFile:
		s, err := filesink.Open(filesink.Options{Dir: cfg.AuditDir(), MaxBytes: int64(cfg.Audit.MaxFileBytes)})
		if err != nil {
			return nil, fmt.Errorf("open audit files: %w", err)
		}
		return s, nil
	}
	if cfg.Storage.Driver == "postgres" {
		s, err := sqlsink.OpenPostgres(ctx, cfg.Storage.DSN, "")
		if err != nil {
			return nil, fmt.Errorf("open audit tables: %w", err)
		}
		return s, nil
	}
	// The trail has its own file; one kept in the main store's file by an
	// earlier version moves there, unchanged, on first use.
	if _, err := sqlsink.AdoptSQLite(ctx, cfg.SQLitePath(), cfg.AuditSQLitePath()); err != nil {
		return nil, fmt.Errorf("move audit tables to %s: %w", cfg.AuditSQLitePath(), err)
	}
	s, err := sqlsink.OpenSQLite(ctx, cfg.AuditSQLitePath())
	if err != nil {
		return nil, fmt.Errorf("open audit tables: %w", err)
	}
	return s, nil
}

// OpenAudit opens the sink and starts the trail writing this node's chain.
// observe (optional) receives each commit's batch size and latency.
func OpenAudit(ctx context.Context, cfg *config.Config, log *slog.Logger, now func() time.Time,
	observe func(batch int, d time.Duration, err error)) (*trail.Trail, chain.Sink, error) {
	sink, err := OpenAuditSink(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	if s, ok := sink.(*sqlsink.SQLite); ok && s.Converted() > 0 {
		log.Info("audit trail converted to the current SQLite layout, hashes unchanged", "entries", s.Converted(), "file", cfg.AuditSQLitePath())
	}
	mode := trail.ModeSync
	if cfg.Audit.Mode == config.AuditModeAsync {
		mode = trail.ModeAsync
		log.Warn("audit.mode is async: responses do not wait for their audit event to be durable; events queued at a crash are lost")
	}
	tr, err := trail.New(ctx, trail.Options{
		Sink: sink, Node: AuditNodeID(cfg), Mode: mode,
		CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval,
		Observe: observe, Logger: log, Now: now,
	})
	if err != nil {
		sink.Close()
		return nil, nil, err
	}
	return tr, sink, nil
}

// checkpointChecker verifies checkpoint signatures with the server's keys;
// a checkpoint signed by a key no longer kept is counted, not failed.
func checkpointChecker(km *keys.Manager, retired *int) func(chain.Checkpoint) error {
	check := chain.SignatureChecker(km.Verify, []string{keys.ES256, keys.RS256})
	return func(cp chain.Checkpoint) error {
		err := check(cp)
		if errors.Is(err, keys.ErrUnknownKID) {
			*retired++
			return nil
		}
		return err
	}
}

// VerifyAudit re-walks every chain in the configured sink; with km, it also
// checks checkpoint signatures. It writes a summary to w and returns the report.
func VerifyAudit(ctx context.Context, cfg *config.Config, km *keys.Manager, w io.Writer) (chain.Report, error) {
	sink, err := OpenAuditSink(ctx, cfg)
	if err != nil {
		return chain.Report{}, err
	}
	defer sink.Close()
	var opts chain.VerifyOptions
	retired := 0
	if km != nil {
		opts.CheckSignature = checkpointChecker(km, &retired)
	}
	rep, err := chain.Verify(ctx, sink, opts)
	if err != nil {
		return rep, err
	}
	for _, n := range rep.Nodes {
		status := "ok"
		if n.Problem != nil {
			status = "BROKEN: " + n.Problem.String()
		}
		fmt.Fprintf(w, "node %s: %d records, %d checkpoints, head %x: %s\n", n.Node, n.Records, n.Checkpoints, n.Head, status)
	}
	if retired > 0 {
		fmt.Fprintf(w, "%d checkpoints are signed by keys no longer kept: their hashes were checked, their signatures could not be\n", retired)
	}
	if len(rep.Nodes) == 0 {
		fmt.Fprintln(w, "no audit records")
	}
	return rep, nil
}

// ExportAudit writes the events matching f from the configured sink to w.
func ExportAudit(ctx context.Context, cfg *config.Config, w io.Writer, f chain.Filter, format export.Format, now time.Time) (int, error) {
	sink, err := OpenAuditSink(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer sink.Close()
	return export.Write(ctx, w, sink, f, format, now)
}

// AuditAPI builds the audit query API (GET /admin/audit, and with
// patientOf the patient access report) on this App's durable trail, for the
// admin listener: mount AdminHandler behind adminapi's authentication, e.g.
// adminH.Handle("GET /admin/audit", h.AdminHandler()). Each query is
// itself audited. With audit.sink: log it returns ErrAuditLogOnly.
func (a *App) AuditAPI(patientOf func(*http.Request) (string, error), names auditapi.ClientNamer) (*auditapi.Handler, error) {
	if a.trail == nil {
		return nil, ErrAuditLogOnly
	}
	return auditapi.New(auditapi.Options{
		Store: a.auditSink, Auditor: a.trail, PatientOf: patientOf, ClientNames: names, Logger: a.log,
		AuthorizeAdmin: func(r *http.Request) (string, error) {
			p, ok := adminapi.PrincipalFrom(r.Context())
			if !ok {
				return "", errors.New("request did not pass the admin listener's authentication")
			}
			return string(p), nil
		},
	})
}

// openAudit opens the configured auditor: the durable trail, or for
// audit.sink: log a LogAuditor (not durable, with a warning).
func (a *App) openAudit(ctx context.Context, cfg *config.Config, log *slog.Logger, now func() time.Time) (audit.Auditor, error) {
	if cfg.Audit.Sink == config.AuditSinkLog {
		log.Warn("audit.sink is log: audit events go to the operational log only; they are not durable, chained or queryable")
		return audit.LogAuditor{Logger: log, Now: now}, nil
	}
	tr, sink, err := OpenAudit(ctx, cfg, log, now, a.prot.auditObserver())
	if err != nil {
		return nil, err
	}
	a.trail, a.auditSink = tr, sink
	a.prot.setAuditDepth(tr.QueueDepth)
	return tr, nil
}

// closeAudit writes every queued audit event and the final checkpoint, then
// closes the sink.
func (a *App) closeAudit() {
	if a.trail == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := a.trail.Close(ctx); err != nil {
		a.log.Error("audit trail: flush on shutdown", "err", err)
	}
	if err := a.auditSink.Close(); err != nil {
		a.log.Warn("audit sink: close", "err", err)
	}
	a.trail = nil
}

// AuditTrail returns the durable audit trail (nil with audit.sink: log or
// an Auditor given in Options).
func (a *App) AuditTrail() *trail.Trail { return a.trail }

// AuditSink returns the audit sink the trail writes (nil when AuditTrail is).
func (a *App) AuditSink() chain.Sink { return a.auditSink }
