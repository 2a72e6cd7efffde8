package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

func code(i int, now time.Time) *storage.AuthCode {
	return &storage.AuthCode{
		Hash:      storage.HashSecret("code-" + strconv.Itoa(i)),
		ClientID:  "c1",
		UserID:    "u1",
		FamilyID:  "f" + strconv.Itoa(i),
		Context:   storage.LaunchContext{Patient: "123"},
		CreatedAt: now,
		ExpiresAt: now.Add(time.Hour),
	}
}

// consumeAll tries to consume codes 0..n-1 from 8 goroutines and counts the
// wins; any error other than ErrAlreadyUsed is returned.
func consumeAll(ctx context.Context, s *sqlite.Store, n int, now time.Time) (int64, error) {
	var wins atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				_, err := s.ConsumeAuthCode(ctx, storage.HashSecret("code-"+strconv.Itoa(i)), now)
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, storage.ErrAlreadyUsed):
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return wins.Load(), firstErr
}

// TestTwoStoresOneFile: a CLI and a server in one process, each with its own
// Store on the same file, race for the same codes; each code has one winner.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	a, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	now := time.Now()
	const n = 40
	for i := range n {
		if err := a.CreateAuthCode(ctx, code(i, now)); err != nil {
			t.Fatal(err)
		}
	}
	var wa, wb int64
	var ea, eb error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); wa, ea = consumeAll(ctx, a, n, now) }()
	go func() { defer wg.Done(); wb, eb = consumeAll(ctx, b, n, now) }()
	wg.Wait()
	if ea != nil || eb != nil {
		t.Fatalf("errors: %v / %v", ea, eb)
	}
	if wa+wb != n {
		t.Fatalf("%d + %d codes consumed, want exactly %d", wa, wb, n)
	}
}

const childEnv = "FHIRGATE_SQLITE_CHILD_DB"

// TestChildProcess is the other process of TestTwoProcessesOneFile; it does
// nothing unless started by it.
func TestChildProcess(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("helper process for TestTwoProcessesOneFile")
	}
	n, _ := strconv.Atoi(os.Getenv(childEnv + "_N"))
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	wins, err := consumeAll(ctx, s, n, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("WINS=%d\n", wins)
}

// TestTwoProcessesOneFile: a second OS process (as the CLI would be) opens
// the same file while this one uses it; each code is consumed exactly once
// across both processes, and neither sees a busy error.
func TestTwoProcessesOneFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	const n = 1000
	for i := range n {
		if err := s.CreateAuthCode(ctx, code(i, now)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+path, childEnv+"_N="+strconv.Itoa(n))
	var out strings.Builder
	cmd.Stderr = &out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Start both processes together once the child has the file open.
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("child did not get ready: %v\n%s", err, out.String())
		}
		if strings.TrimSpace(line) == "READY" {
			break
		}
	}
	if _, err := io.WriteString(stdin, "GO\n"); err != nil {
		t.Fatal(err)
	}
	mine, myErr := consumeAll(ctx, s, n, now)
	rest, _ := io.ReadAll(r)
	out.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if myErr != nil {
		t.Fatal(myErr)
	}
	_, after, ok := strings.Cut(out.String(), "WINS=")
	if !ok {
		t.Fatalf("child output: %s", out.String())
	}
	theirs, err := strconv.Atoi(strings.Fields(after)[0])
	if err != nil {
		t.Fatal(err)
	}
	if int(mine)+theirs != n {
		t.Fatalf("this process won %d, the other %d; want %d in total", mine, theirs, n)
	}
	t.Logf("this process won %d codes, the other %d", mine, theirs)
}

// TestMigrationsIdempotent: reopening keeps data and applies nothing twice;
// two stores opening a new file at once both succeed.
func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested dir?x=1#frag", "data")
	path := filepath.Join(dir, "fhirgate.db")
	var wg sync.WaitGroup
	stores := make([]*sqlite.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Add(1)
		go func() { defer wg.Done(); stores[i], errs[i] = sqlite.Open(ctx, path) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
	}
	if err := stores[0].CreateUser(ctx, &storage.User{ID: "u1", Username: "amy", Role: storage.RolePatient}); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if _, err := s.GetUser(ctx, "u1"); err != nil {
			t.Fatalf("data lost on reopen: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if v := sqlite.SchemaVersion(t, path); v != sqlite.LatestVersion() {
		t.Fatalf("schema_migrations: %d, want %d", v, sqlite.LatestVersion())
	}

	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", st.Mode().Perm())
	}
	st, err = os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", st.Mode().Perm())
	}
}
