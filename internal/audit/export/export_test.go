package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

func entry(ev audit.Event) chain.Entry { return chain.Link("node-1", nil, ev) }

func TestPatientReadIsBALPShaped(t *testing.T) {
	ev := audittest.SampleEvent(3, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ae := ToAuditEvent(entry(ev))
	if ae.ResourceType != "AuditEvent" || ae.ID != "node-1-1" || ae.Type.Code != "rest" || ae.Action != "R" || ae.Outcome != "0" {
		t.Fatalf("header: %+v", ae)
	}
	if ae.Subtype[0] != (Coding{System: SystemRESTful, Code: "read"}) {
		t.Fatalf("subtype: %+v", ae.Subtype)
	}
	if ae.Meta == nil || ae.Meta.Profile[0] != profilePatientRead {
		t.Fatalf("profile: %+v", ae.Meta)
	}
	user := ae.Agent[0]
	if !user.Requestor || user.Type.Coding[0].Code != "UserOauthAgent" || user.Who.Reference != ev.FHIRUser ||
		user.Who.Identifier.Value != ev.UserID || user.Policy[0] != ev.TokenID {
		t.Fatalf("user agent: %+v", user)
	}
	client := ae.Agent[1]
	if client.Type.Coding[0].Code != "110153" || client.Who.Identifier.Value != ev.ClientID || client.Network.Address != ev.SourceIP {
		t.Fatalf("client agent: %+v", client)
	}
	if ae.Agent[2].Type.Coding[0].Code != "110152" {
		t.Fatalf("server agent: %+v", ae.Agent[2])
	}
	if ae.Entity[0].What.Reference != "Patient/"+ev.Patient || ae.Entity[0].Role.Code != "1" {
		t.Fatalf("patient entity: %+v", ae.Entity[0])
	}
	if ae.Entity[1].What.Reference != "Observation/"+ev.ResourceID || ae.Entity[2].Type.Code != "XrequestId" {
		t.Fatalf("entities: %+v", ae.Entity)
	}
	b, _ := json.Marshal(ae)
	if bytes.Contains(b, []byte(`[]`)) || bytes.Contains(b, []byte(`""`)) {
		t.Fatalf("FHIR JSON must not hold empty arrays or strings: %s", b)
	}
}

func TestAuthorizationServerEvents(t *testing.T) {
	cases := map[audit.Action]string{
		audit.ActionLogin: "110114", audit.ActionTokenIssued: "110114", audit.ActionRefreshReuse: "110113",
		audit.ActionKeyRotated: "110113", audit.ActionConsentGranted: "110100",
	}
	for action, code := range cases {
		ae := ToAuditEvent(entry(audit.Event{Time: time.Now(), Action: action, Outcome: audit.Failure, Reason: "why", ClientID: "app"}))
		if ae.Type.Code != code || ae.Outcome != "4" || ae.OutcomeDesc != "why" || ae.Subtype[len(ae.Subtype)-1].Code != string(action) {
			t.Errorf("%s: %+v", action, ae)
		}
		if !ae.Agent[0].Requestor { // no user: the client is the requestor
			t.Errorf("%s: client not requestor", action)
		}
	}
}

func fill(t *testing.T, n int) *audittest.MemorySink {
	s := audittest.NewMemorySink()
	var prev *chain.Entry
	var es []chain.Entry
	for i := range n {
		e := chain.Link("n", prev, audittest.SampleEvent(i, time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)))
		es = append(es, e)
		prev = &es[len(es)-1]
	}
	if err := s.Append(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWriteFormats(t *testing.T) {
	s := fill(t, 2500) // more than one page
	ctx := context.Background()
	now := time.Now()
	for _, f := range []Format{FHIR, JSON} {
		var buf bytes.Buffer
		n, err := Write(ctx, &buf, s, chain.Filter{}, f, now)
		if err != nil || n != 2500 {
			t.Fatalf("%s: %d, %v", f, n, err)
		}
		lines := 0
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			lines++
		}
		if lines != 2500 {
			t.Fatalf("%s: %d lines", f, lines)
		}
	}
	var buf bytes.Buffer
	n, err := Write(ctx, &buf, s, chain.Filter{Patient: "pat-2"}, FHIRBundle, now)
	var b struct {
		ResourceType string
		Entry        []struct{ Resource AuditEvent }
	}
	if err != nil || json.Unmarshal(buf.Bytes(), &b) != nil || b.ResourceType != "Bundle" || len(b.Entry) != n || n != 625 {
		t.Fatalf("bundle: n=%d err=%v entries=%d", n, err, len(b.Entry))
	}
	buf.Reset()
	if n, err := Write(ctx, &buf, s, chain.Filter{Patient: "nobody"}, FHIRBundle, now); n != 0 || err != nil || strings.Contains(buf.String(), "entry") {
		t.Fatalf("empty bundle: %s %v", buf.String(), err)
	}
	if _, err := Write(ctx, &buf, s, chain.Filter{}, "xml", now); !errors.Is(err, ErrFormat) {
		t.Fatalf("bad format: %v", err)
	}
}

// Exports carry identifiers only: a reason holding a token was redacted
// before it was stored, and nothing else in an event holds content.
func TestExportHoldsNoToken(t *testing.T) {
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	ev := audit.Redact(audit.Event{Time: time.Now(), Action: audit.ActionTokenRefused, Reason: "refused " + jwt})
	b, _ := json.Marshal(ToAuditEvent(entry(ev)))
	if bytes.Contains(b, []byte(jwt)) {
		t.Fatal("token in export")
	}
}
