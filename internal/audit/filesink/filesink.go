// Package filesink stores the audit trail as append-only JSON-lines files.
//
// Layout: one directory per node under the sink's directory, holding
// segments named by the sequence number of their first entry
// (00000000000000000001.jsonl, ...) and checkpoints.jsonl. Append writes a
// whole batch with one write and one fsync; a segment is closed and a new one
// started (rotation) once it would exceed MaxBytes. A crash can leave at most
// a torn last line, which was never acknowledged: it is cut off when the node
// is next opened for writing and ignored by readers. Each node directory is
// locked (flock) by the one process writing it.
//
// Queries scan every segment; use a SQL sink for large trails that are
// queried often. Removing old segments for retention breaks verification of
// the rest (the first remaining record no longer links to Genesis).
package filesink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// DefaultMaxBytes is the segment size at which a new segment is started.
const DefaultMaxBytes = 64 << 20

const (
	segmentExt      = ".jsonl"
	checkpointsFile = "checkpoints.jsonl"
	lockFile        = ".lock"
)

// ErrBadNode is returned for a node id that is not a safe directory name.
var ErrBadNode = errors.New("audit file sink: node id must be 1-64 of A-Z a-z 0-9 . _ -")

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`)

// Options configure a Sink.
type Options struct {
	Dir      string // required; created with mode 0700
	MaxBytes int64  // segment rotation size; DefaultMaxBytes when 0
}

// Sink is a chain.Sink on JSON-lines files. It is safe for concurrent use.
type Sink struct {
	opts  Options
	mu    sync.Mutex
	nodes map[string]*writer
}

// writer is the open state of one node directory.
type writer struct {
	mu   sync.Mutex
	dir  string
	lock *os.File
	f    *os.File // current segment
	size int64
	head *chain.Entry
	cpf  *os.File
}

var _ chain.Sink = (*Sink)(nil)

// Open returns a sink writing under opts.Dir.
func Open(opts Options) (*Sink, error) {
	if opts.Dir == "" {
		return nil, errors.New("audit file sink: Dir is required")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit file sink: %w", err)
	}
	return &Sink{opts: opts, nodes: map[string]*writer{}}, nil
}

// Close implements chain.Sink.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, w := range s.nodes {
		w.mu.Lock()
		for _, f := range []*os.File{w.f, w.cpf, w.lock} {
			if f != nil {
				errs = append(errs, f.Close())
			}
		}
		w.f, w.cpf, w.lock = nil, nil, nil
		w.mu.Unlock()
	}
	s.nodes = map[string]*writer{}
	return errors.Join(errs...)
}

// node returns the writer for node, opening (locking and repairing) its
// directory on first use.
func (s *Sink) node(node string) (*writer, error) {
	if !nodeName.MatchString(node) {
		return nil, fmt.Errorf("%w: %q", ErrBadNode, node)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.nodes[node]; ok {
		return w, nil
	}
	dir := filepath.Join(s.opts.Dir, node)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit file sink: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit file sink: %w", err)
	}
	if err := lockExclusive(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit file sink: node %q is in use by another process: %w", node, err)
	}
	w := &writer{dir: dir, lock: lock}
	if err := w.openTail(); err != nil {
		lock.Close()
		return nil, err
	}
	s.nodes[node] = w
	return w, nil
}

// segments lists the segment files of a node directory in order.
func segments(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, segmentExt); ok && e.Type().IsRegular() {
			if _, err := strconv.ParseUint(base, 10, 64); err == nil {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out) // fixed-width names sort numerically
	return out, nil
}

func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentExt) }

// openTail opens the last segment for appending, cutting off a torn last
// line, and reads the chain head from it.
func (w *writer) openTail() error {
	segs, err := segments(w.dir)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	if len(segs) == 0 {
		return nil
	}
	path := filepath.Join(w.dir, segs[len(segs)-1])
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	size, last, err := tail(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit file sink: read %s: %w", path, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() != size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return fmt.Errorf("audit file sink: repair torn line: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("audit file sink: repair torn line: %w", err)
		}
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("audit file sink: %w", err)
	}
	w.f, w.size = f, size
	// A crash right after a rotation leaves the newest segment empty (or
	// holding only a torn line): the head is then the last line of an
	// earlier segment. The empty one stays open for appending; it is named
	// for the sequence number that follows that head.
	for i := len(segs) - 2; last == nil && i >= 0; i-- {
		if last, err = lastLine(filepath.Join(w.dir, segs[i])); err != nil {
			return err
		}
		path = filepath.Join(w.dir, segs[i])
	}
	if last != nil {
		e, err := decodeLine(last)
		if err != nil {
			return fmt.Errorf("audit file sink: last line of %s: %w", path, err)
		}
		w.head = &e
	}
	return nil
}

// lastLine returns the last complete line of the segment at path (nil if none).
func lastLine(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit file sink: %w", err)
	}
	defer f.Close()
	_, last, err := tail(f)
	if err != nil {
		return nil, fmt.Errorf("audit file sink: read %s: %w", path, err)
	}
	return last, nil
}

// tail returns the length of f up to and including its last newline, and
// the last complete line (nil if none).
func tail(f *os.File) (int64, []byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	end := fi.Size()
	const chunk = 64 << 10
	var buf []byte
	for off := end; off > 0; {
		n := min(int64(chunk), off)
		off -= n
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			return 0, nil, err
		}
		buf = append(b, buf...)
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			complete := off + int64(i) + 1
			j := bytes.LastIndexByte(buf[:i], '\n')
			if j >= 0 || off == 0 {
				return complete, append([]byte(nil), buf[j+1:i]...), nil
			}
		}
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return int64(i) + 1, append([]byte(nil), buf[:i]...), nil
	}
	return 0, nil, nil
}

func decodeLine(line []byte) (chain.Entry, error) {
	var j chain.JSONEntry
	if err := json.Unmarshal(line, &j); err != nil {
		return chain.Entry{}, err
	}
	return chain.FromJSON(j)
}

// Head implements chain.Sink.
func (s *Sink) Head(_ context.Context, node string) (chain.Entry, bool, error) {
	w, err := s.node(node)
	if err != nil {
		return chain.Entry{}, false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == nil {
		return chain.Entry{}, false, nil
	}
	return *w.head, true, nil
}

// Append implements chain.Sink: one write and one fsync per batch.
func (s *Sink) Append(_ context.Context, entries []chain.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	w, err := s.node(entries[0].Node)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, e := range entries {
		if e.Node != entries[0].Node {
			return errors.New("audit file sink: one batch must hold one node")
		}
		line, err := json.Marshal(chain.ToJSON(e))
		if err != nil {
			return fmt.Errorf("audit file sink: %w", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	want := uint64(1)
	if w.head != nil {
		want = w.head.Seq + 1
	}
	for i, e := range entries {
		if e.Seq != want+uint64(i) {
			return fmt.Errorf("audit file sink: entry %d follows %d: %w", e.Seq, want-1, chain.ErrConflict)
		}
	}
	if w.f == nil || (w.size > 0 && w.size+int64(buf.Len()) > s.opts.MaxBytes) {
		if err := w.rotate(entries[0].Seq); err != nil {
			return err
		}
	}
	n, err := w.f.Write(buf.Bytes())
	w.size += int64(n)
	if err == nil {
		err = w.f.Sync()
	}
	if err != nil {
		// Cut off whatever part of the batch reached the file so the
		// segment never holds unacknowledged lines.
		w.size -= int64(n)
		_ = w.f.Truncate(w.size)
		_, _ = w.f.Seek(w.size, io.SeekStart)
		return fmt.Errorf("audit file sink: write: %w", err)
	}
	last := entries[len(entries)-1]
	w.head = &last
	return nil
}

// rotate closes the current segment and starts one for entries from seq.
func (w *writer) rotate(seq uint64) error {
	if w.f != nil {
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("audit file sink: close segment: %w", err)
		}
		w.f = nil
	}
	f, err := os.OpenFile(filepath.Join(w.dir, segmentName(seq)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit file sink: new segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit file sink: sync directory: %w", err)
	}
	return nil
}

// SaveCheckpoint implements chain.Sink.
func (s *Sink) SaveCheckpoint(_ context.Context, cp chain.Checkpoint) error {
	w, err := s.node(cp.Node)
	if err != nil {
		return err
	}
	line, err := json.Marshal(chain.CheckpointToJSON(cp))
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cpf == nil {
		w.cpf, err = os.OpenFile(filepath.Join(w.dir, checkpointsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("audit file sink: %w", err)
		}
	}
	if _, err := w.cpf.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit file sink: checkpoint: %w", err)
	}
	if err := w.cpf.Sync(); err != nil {
		return fmt.Errorf("audit file sink: checkpoint: %w", err)
	}
	return nil
}

// Nodes implements chain.Source.
func (s *Sink) Nodes(context.Context) ([]string, error) {
	ents, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit file sink: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && nodeName.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Scan implements chain.Source, in file order. A line that does not parse
// is passed on as an entry without a hash, so Verify reports it as altered.
func (s *Sink) Scan(ctx context.Context, node string, fn func(chain.Entry) error) error {
	if !nodeName.MatchString(node) {
		return fmt.Errorf("%w: %q", ErrBadNode, node)
	}
	dir := filepath.Join(s.opts.Dir, node)
	segs, err := segments(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("audit file sink: %w", err)
	}
	var prevSeq uint64
	for _, name := range segs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := scanFile(filepath.Join(dir, name), func(line []byte) error {
			e, err := decodeLine(line)
			if err != nil {
				e = chain.Entry{Node: node, Seq: prevSeq + 1}
			}
			prevSeq = e.Seq
			return fn(e)
		}); err != nil {
			return err
		}
	}
	return nil
}

// scanFile calls fn for each complete (newline-terminated) line of path.
func scanFile(path string, fn func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err == io.EOF {
			return nil // a torn last line (no newline) is not a record
		}
		if err != nil {
			return fmt.Errorf("audit file sink: read %s: %w", path, err)
		}
		if err := fn(line[:len(line)-1]); err != nil {
			return err
		}
	}
}

// Checkpoints implements chain.Source.
func (s *Sink) Checkpoints(_ context.Context, node string) ([]chain.Checkpoint, error) {
	if !nodeName.MatchString(node) {
		return nil, fmt.Errorf("%w: %q", ErrBadNode, node)
	}
	var out []chain.Checkpoint
	err := scanFile(filepath.Join(s.opts.Dir, node, checkpointsFile), func(line []byte) error {
		var j chain.JSONCheckpoint
		if err := json.Unmarshal(line, &j); err != nil {
			return fmt.Errorf("audit file sink: checkpoint line: %w", err)
		}
		cp, err := chain.CheckpointFromJSON(j)
		if err != nil {
			return err
		}
		out = append(out, cp)
		return nil
	})
	if err != nil && errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return out, err
}

// Query implements chain.Sink by scanning every segment of every node.
func (s *Sink) Query(ctx context.Context, f chain.Filter) (chain.Page, error) {
	f = f.Normalized()
	var after *chain.Cursor
	if f.After != "" {
		c, err := chain.DecodeCursor(f.After)
		if err != nil {
			return chain.Page{}, err
		}
		after = &c
	}
	nodes, err := s.Nodes(ctx)
	if err != nil {
		return chain.Page{}, err
	}
	var all []chain.Entry
	for _, n := range nodes {
		err := s.Scan(ctx, n, func(e chain.Entry) error {
			if e.Hash != nil && f.Match(e) && (after == nil || after.Less(e)) {
				all = append(all, e)
			}
			return nil
		})
		if err != nil {
			return chain.Page{}, err
		}
	}
	chain.SortEntries(all)
	return chain.PageOf(all, f.Limit), nil
}
