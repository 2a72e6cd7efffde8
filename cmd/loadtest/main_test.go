package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestRunSmoke(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, 2, 300*time.Millisecond, 50*time.Millisecond, true, true, ""); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Results []result
		Ratios  map[string]float64
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Results) != 3 || rep.Ratios["gateway_vs_proxy"] <= 0 {
		t.Fatalf("report %s", out.String())
	}
	for _, r := range rep.Results {
		if r.Requests == 0 || r.Errors != 0 {
			t.Fatalf("%s: %d requests, %d errors", r.Name, r.Requests, r.Errors)
		}
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	if err := run(context.Background(), &bytes.Buffer{}, 0, time.Second, 0, false, false, ""); err == nil {
		t.Fatal("concurrency 0 accepted")
	}
}
