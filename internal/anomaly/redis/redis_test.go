package redis_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/anomaly/anomalytest"
	anredis "github.com/fhirgate/fhirgate/internal/anomaly/redis"
	"github.com/fhirgate/fhirgate/internal/audit"
)

func client(t *testing.T) *goredis.Client {
	t.Helper()
	addr := os.Getenv("FHIRGATE_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS_ADDR is unset: skipping the Redis anomaly store tests (set it to host:port of a Redis server, e.g. 127.0.0.1:6379; .ci/run does)")
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s: %v", addr, err)
	}
	return c
}

func TestRedisStoreSuite(t *testing.T) {
	c := client(t)
	anomalytest.RunStore(t, func(t *testing.T) anomaly.Store {
		s, err := anredis.New(c, fmt.Sprintf("fhirgate:test:anomaly:%d:", time.Now().UnixNano()), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Two detectors (two nodes) sharing the store: a suspension raised on one
// is enforced by the other after its refresh, and a clear on either lifts it.
func TestTwoNodesShareSuspensions(t *testing.T) {
	c := client(t)
	store, _ := anredis.New(c, fmt.Sprintf("fhirgate:test:anomaly:%d:", time.Now().UnixNano()), time.Hour)
	cfg := anomaly.Config{Replay: anomaly.EventConfig{Action: anomaly.ActionSuspend}}
	nop := auditFunc(func(context.Context, anomaly.Anomaly) {})
	n1, err := anomaly.New(anomaly.Options{Config: cfg, Store: store, Auditor: nop, Refresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close(context.Background())
	n2, _ := anomaly.New(anomaly.Options{Config: cfg, Store: store, Auditor: nop, Refresh: 20 * time.Millisecond})
	defer n2.Close(context.Background())
	n1.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: "evil"})
	waitFor(t, func() bool { return n2.Check("evil", "", "").Suspended() })
	as, _ := n2.List(context.Background(), anomaly.ListOptions{})
	if len(as) != 1 {
		t.Fatalf("node 2 lists %d anomalies", len(as))
	}
	if _, err := n2.Clear(context.Background(), as[0].ID, "admin"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !n1.Check("evil", "", "").Suspended() })
}

type auditFunc func(context.Context, anomaly.Anomaly)

func (auditFunc) Record(context.Context, audit.Event) error { return nil }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
