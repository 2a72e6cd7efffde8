package trail_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/filesink"
	"github.com/fhirgate/fhirgate/internal/audit/sqlsink"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
)

// crashEnv makes the test binary act as the crash-test child: "kind:path".
const crashEnv = "FHIRGATE_AUDIT_CRASH_CHILD"

func openSink(t testing.TB, kind, path string) chain.Sink {
	t.Helper()
	var s chain.Sink
	var err error
	switch kind {
	case "sqlite":
		s, err = sqlsink.OpenSQLite(context.Background(), path)
	case "file":
		s, err = filesink.Open(filesink.Options{Dir: path, MaxBytes: 64 << 10})
	case "postgres":
		s, err = sqlsink.OpenPostgres(context.Background(), os.Getenv("FHIRGATE_TEST_POSTGRES_DSN"), path)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMain runs the crash child when asked to: it records events from many
// goroutines and prints each request id once Record returned nil, until it
// is killed.
func TestMain(m *testing.M) {
	if spec := os.Getenv(crashEnv); spec != "" {
		kind, path, _ := strings.Cut(spec, ":")
		crashChild(kind, path)
		return
	}
	os.Exit(m.Run())
}

func crashChild(kind, path string) {
	t := &testing.T{}
	s := openSink(t, kind, path)
	ctx := context.Background()
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "crash", CheckpointEvery: 500, Signer: audittest.Signer{Key: []byte("k")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for g := 0; g < 32; g++ {
		go func() {
			for i := 0; ; i++ {
				ev := audittest.SampleEvent(i, time.Now())
				ev.RequestID = fmt.Sprintf("p%d-g%d-%d", os.Getpid(), g, i)
				if err := tr.Record(ctx, ev); err != nil {
					continue
				}
				mu.Lock()
				out.WriteString(ev.RequestID + "\n")
				out.Flush() // the "response" is sent only after the event is durable
				mu.Unlock()
			}
		}()
	}
	select {}
}

func TestCrashLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test starts child processes")
	}
	kinds := []string{"sqlite", "file"}
	if os.Getenv("FHIRGATE_TEST_POSTGRES_DSN") != "" {
		kinds = append(kinds, "postgres")
	} else {
		t.Log("FHIRGATE_TEST_POSTGRES_DSN is not set: crash test skips PostgreSQL")
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit")
			if kind == "sqlite" {
				path += ".db"
			}
			if kind == "postgres" {
				path = fmt.Sprintf("audit_crash_%d", time.Now().UnixNano()%1e9)
				t.Cleanup(func() {
					c, err := pgx.Connect(context.Background(), os.Getenv("FHIRGATE_TEST_POSTGRES_DSN"))
					if err == nil {
						c.Exec(context.Background(), "DROP SCHEMA "+path+" CASCADE")
						c.Close(context.Background())
					}
				})
			}
			acked := map[string]bool{}
			for round := 0; round < 2; round++ { // crash, restart on the same store, crash again
				for id := range runAndKill(t, kind, path, 1500) {
					acked[id] = true
				}
			}
			s := openSink(t, kind, path)
			defer s.Close()
			ctx := context.Background()
			rep, err := chain.Verify(ctx, s, chain.VerifyOptions{CheckSignature: audittest.Signer{Key: []byte("k")}.Check})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("chain broken after kill -9: %v", rep.Problems())
			}
			stored := map[string]bool{}
			s.Scan(ctx, "crash", func(e chain.Entry) error { stored[e.Event.RequestID] = true; return nil })
			for id := range acked {
				if !stored[id] {
					t.Fatalf("event %s was acknowledged but is not stored", id)
				}
			}
			t.Logf("%s: %d acknowledged, %d stored, %d checkpoints, chain intact", kind, len(acked), len(stored), rep.Nodes[0].Checkpoints)
		})
	}
}

// runAndKill starts the child, waits until it acknowledged at least n
// events, kills it with SIGKILL and returns every id it acknowledged.
func runAndKill(t *testing.T, kind, path string, n int) map[string]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+kind+":"+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(20 * time.Second)
	for sc.Scan() {
		acked[sc.Text()] = true
		if len(acked) >= n || time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // lines the child wrote before it died
		acked[sc.Text()] = true
	}
	cmd.Wait()
	if len(acked) < n {
		t.Fatalf("child acknowledged only %d events", len(acked))
	}
	return acked
}
