package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAuditVerifyAndExport(t *testing.T) {
	dir := t.TempDir()
	base, stop := startServe(t, nil, "--data-dir", dir, "--addr", "127.0.0.1:0")
	for _, c := range []string{"a", "b", "c"} {
		resp, err := http.PostForm(base+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {c}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if r := stop(); r.code != 0 {
		t.Fatalf("serve: %d %s", r.code, r.stderr)
	}
	out := mustCLI(t, "audit", "verify", "--data-dir", dir)
	if !strings.Contains(out, "records") || !strings.Contains(out, ": ok") {
		t.Fatalf("verify output: %s", out)
	}
	fhirOut := mustCLI(t, "audit", "export", "--data-dir", dir, "--since", "2000-01-01", "--format", "fhir", "--action", "token.refused")
	sc := bufio.NewScanner(strings.NewReader(fhirOut))
	n := 0
	for sc.Scan() {
		var ae map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ae); err != nil || ae["resourceType"] != "AuditEvent" {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d AuditEvents exported, want 3", n)
	}
	if r := cli(t, nil, "", "audit", "export", "--data-dir", dir, "--format", "xml"); r.code == 0 {
		t.Fatal("bad format accepted")
	}

	db, err := sql.Open("sqlite", "file:"+dir+"/audit.db")
	if err != nil {
		t.Fatal(err)
	}
	// Remove the stored block that holds record 2 (audit.db keeps runs of
	// consecutive records in blocks): verify names its first record.
	var first int
	if err := db.QueryRow("SELECT id & 0xFFFFFFFFFFF FROM audit_blocks WHERE id & 0xFFFFFFFFFFF <= 2 AND last >= 2").Scan(&first); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("DELETE FROM audit_blocks WHERE id & 0xFFFFFFFFFFF = ?", first); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r := cli(t, nil, "", "audit", "verify", "--data-dir", dir)
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("record %d: removed", first)) {
		t.Fatalf("tampered verify: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
