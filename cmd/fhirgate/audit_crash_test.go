package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/password"
)

// crashServeEnv makes TestCrashServeChild run `fhirgate serve` with the
// arguments in the variable (space-separated) until it is killed.
const crashServeEnv = "FHIRGATE_TEST_CRASH_SERVE"

// TestCrashServeChild is the child process of TestServeKilledMidLoad.
func TestCrashServeChild(t *testing.T) {
	args := os.Getenv(crashServeEnv)
	if args == "" {
		t.Skip("child process of TestServeKilledMidLoad only")
	}
	code := run(context.Background(), append([]string{"serve"}, strings.Fields(args)...), &env{
		stdin: strings.NewReader(""), stdout: os.Stdout, stderr: os.Stderr,
		lookupEnv: func(string) (string, bool) { return "", false }, now: time.Now, passwordParams: password.Default,
	})
	os.Exit(code)
}

// TestServeKilledMidLoad starts the server as a child process, drives
// concurrent audited requests, kills it with SIGKILL mid-load, restarts it,
// and checks that `fhirgate audit verify` passes and that every request that
// got a response has its audit event.
func TestServeKilledMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	answered := map[string]bool{}
	for round := 0; round < 2; round++ {
		for id := range loadAndKill(t, dir, round, 300) {
			answered[id] = true
		}
	}
	out := mustCLI(t, "audit", "verify", "--data-dir", dir)
	if !strings.Contains(out, ": ok") {
		t.Fatalf("verify after kill -9: %s", out)
	}
	exported := mustCLI(t, "audit", "export", "--data-dir", dir, "--format", "json", "--action", "token.refused")
	for id := range answered {
		if !strings.Contains(exported, `"client_id":"`+id+`"`) {
			t.Fatalf("request %s got a response but its audit event is missing", id)
		}
	}
	t.Logf("%d answered requests over two crashes, all audited; %s", len(answered), strings.TrimSpace(out))
}

// loadAndKill runs one server life: it returns the client ids of requests
// that got an HTTP response before the SIGKILL.
func loadAndKill(t *testing.T, dir string, round, n int) map[string]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashServeChild$")
	cmd.Env = append(os.Environ(), crashServeEnv+"=--data-dir "+dir+" --addr 127.0.0.1:0")
	var childErr syncBuffer // shown only when the child fails to start
	cmd.Stderr = &childErr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Signal(syscall.SIGKILL)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "fhirgate: serving on ") {
		t.Fatalf("ready line %q: %v\n%s", line, err, childErr.String())
	}
	base := strings.Fields(strings.TrimPrefix(line, "fhirgate: serving on "))[0]

	var mu sync.Mutex
	answered := map[string]bool{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				id := fmt.Sprintf("r%d-w%d-%d", round, w, i)
				resp, err := client.PostForm(base+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {id}})
				if err != nil {
					return // the server died
				}
				resp.Body.Close()
				mu.Lock()
				answered[id] = true
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(answered)
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(answered) < n {
		t.Fatalf("only %d requests answered", len(answered))
	}
	return answered
}
