package app

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/export"
)

// refuseToken makes one audited refusal at /token.
func refuseToken(t *testing.T, srv *testServer, clientID string) {
	t.Helper()
	resp, err := http.PostForm(srv.app.Issuer()+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "client_id": {clientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("bogus code accepted: %d", resp.StatusCode)
	}
}

// The default server writes a durable, verifiable audit trail: every event
// of a sent response is in the store and the chain verifies.
func TestAuditTrailDurableAndVerifiable(t *testing.T) {
	for _, sink := range []string{"store", "file"} {
		t.Run(sink, func(t *testing.T) {
			srv := startServer(t, map[string]string{"audit.sink": sink, "audit.node_id": "node-a", "audit.checkpoint_every": "2"})
			for i := range 5 {
				refuseToken(t, srv, "client-"+string(rune('a'+i)))
			}
			ctx := context.Background()
			// Sync mode: the responses were sent, so their events are durable now.
			var buf bytes.Buffer
			n, err := ExportAudit(ctx, srv.cfg, &buf, chain.Filter{Actions: []audit.Action{audit.ActionTokenRefused}}, export.JSON, time.Now())
			if err != nil || n != 5 {
				t.Fatalf("export: %d events, %v\n%s", n, err, buf.String())
			}
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var e chain.JSONEntry
				if err := json.Unmarshal([]byte(line), &e); err != nil || e.Node != "node-a" || e.Event.ClientID == "" {
					t.Fatalf("exported line %q: %v", line, err)
				}
			}
			var out bytes.Buffer
			rep, err := VerifyAudit(ctx, srv.cfg, srv.app.Keys(), &out)
			if err != nil || !rep.OK() || len(rep.Nodes) != 1 || rep.Nodes[0].Checkpoints < 2 {
				t.Fatalf("verify: %+v %v\n%s", rep, err, out.String())
			}
			// Checkpoints are signed by the server's keys: a forged one is caught.
			sinkR, err := OpenAuditSink(ctx, srv.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sinkR.Close()
			cps, _ := sinkR.Checkpoints(ctx, "node-a")
			retired := 0
			check := checkpointChecker(srv.app.Keys(), &retired)
			if err := check(cps[0]); err != nil {
				t.Fatalf("real checkpoint: %v", err)
			}
			forged := cps[0]
			forged.Seq++
			if err := check(forged); err == nil {
				t.Fatal("checkpoint with a moved sequence number verified")
			}
		})
	}
}

func TestAuditTamperDetected(t *testing.T) {
	srv := startServer(t, map[string]string{"audit.node_id": "node-a"})
	for i := range 3 {
		refuseToken(t, srv, "client-"+string(rune('a'+i)))
	}
	db, err := sql.Open("sqlite", "file:"+srv.cfg.AuditSQLitePath()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Record 2 names client-b; rename it to another name of the same length
	// inside its stored block, which still decodes.
	var id int64
	var body []byte
	if err := db.QueryRow("SELECT id, body FROM audit_blocks WHERE id & 0xFFFFFFFFFFF <= 2 AND last >= 2").Scan(&id, &body); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte("client-b")) {
		t.Fatalf("block %d does not hold client-b", id)
	}
	if _, err := db.Exec("UPDATE audit_blocks SET body = ? WHERE id = ?", bytes.ReplaceAll(body, []byte("client-b"), []byte("client-z")), id); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep, err := VerifyAudit(context.Background(), srv.cfg, srv.app.Keys(), &out)
	if err != nil {
		t.Fatal(err)
	}
	if p := rep.Problems(); len(p) != 1 || p[0].Seq != 2 || p[0].Kind != chain.Altered || !strings.Contains(out.String(), "BROKEN") {
		t.Fatalf("tampering not reported: %v\n%s", p, out.String())
	}
}

func TestAuditSinkLogIsNotDurable(t *testing.T) {
	srv := startServer(t, map[string]string{"audit.sink": "log"})
	if _, err := OpenAuditSink(context.Background(), srv.cfg); err == nil {
		t.Fatal("log sink opened as durable")
	}
}

// GET /admin/audit behind the admin API's token authentication.
func TestAuditAPIBehindAdminListener(t *testing.T) {
	srv := startServer(t, map[string]string{"audit.node_id": "node-a"})
	refuseToken(t, srv, "client-x")
	ctx := context.Background()
	tokens := adminapi.NewFileTokens(filepath.Join(t.TempDir(), "admin-tokens.json"))
	text, rec, err := adminapi.NewToken("ops", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := tokens.AddToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	admin, err := adminapi.New(adminapi.Options{Tokens: tokens, Auditor: srv.app.AuditTrail()})
	if err != nil {
		t.Fatal(err)
	}
	api, err := srv.app.AuditAPI(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin.Handle("GET /admin/audit", api.AdminHandler())
	adminSrv := httptest.NewServer(admin)
	defer adminSrv.Close()

	get := func(token string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", adminSrv.URL+"/admin/audit?client=client-x", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, _ := get(""); code != 401 {
		t.Fatalf("no admin token: %d", code)
	}
	code, body := get(text)
	events, _ := body["events"].([]any)
	if code != 200 || len(events) != 1 {
		t.Fatalf("admin query: %d %v", code, body)
	}
	// The query itself is in the trail, with the admin's name.
	var buf bytes.Buffer
	if n, err := ExportAudit(ctx, srv.cfg, &buf, chain.Filter{Actions: []audit.Action{audit.ActionAuditQuery}}, export.JSON, time.Now()); err != nil || n != 1 || !strings.Contains(buf.String(), "token:ops/") {
		t.Fatalf("audit of the audit query: %d %v %s", n, err, buf.String())
	}
}

// A server opening an audit.db in the first SQLite layout converts it and
// says so in its log.
func TestOpenAuditLogsLayoutConversion(t *testing.T) {
	srv := startServer(t, map[string]string{"audit.node_id": "node-a"})
	cfg := *srv.cfg
	cfg.DataDir = t.TempDir()
	db, err := sql.Open("sqlite", "file:"+cfg.AuditSQLitePath())
	if err != nil {
		t.Fatal(err)
	}
	// The first layout's table, with one record of another node.
	cols := "node, seq, prev, hash, time_us, action, outcome, reason, user_id, fhir_user, client_id, source_ip, user_agent, " +
		"patient, scope, token_id, request_id, interaction, resource_type, resource_id, entries_filtered, allowed_by, binding"
	if _, err := db.Exec("CREATE TABLE audit_events (id INTEGER PRIMARY KEY, " + strings.ReplaceAll(cols, ",", " NOT NULL,") + " NOT NULL, UNIQUE (node, seq))"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO audit_events (" + cols + ") VALUES ('old-node', 1, zeroblob(32), zeroblob(32), 1, 'token.issued', 'success', '', '', '', '', '', '', '', '', '', '', '', '', '', 0, '', '')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var logs bytes.Buffer
	tr, sink, err := OpenAudit(context.Background(), &cfg, slog.New(slog.NewTextHandler(&logs, nil)), time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	defer tr.Close(context.Background())
	if !strings.Contains(logs.String(), "audit trail converted") || !strings.Contains(logs.String(), "entries=1") {
		t.Fatalf("no conversion in the log:\n%s", logs.String())
	}
	if h, ok, err := sink.Head(context.Background(), "old-node"); err != nil || !ok || h.Seq != 1 {
		t.Fatalf("converted record: %+v %v %v", h, ok, err)
	}
}
