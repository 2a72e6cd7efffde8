// Package trail is the durable audit trail: an audit.Auditor that hash-chains
// events (package chain) and writes them to a chain.Sink with group commit.
//
// One writer goroutine owns the chain head of this node. Record queues the
// event; the writer takes everything queued (up to MaxBatch), links it onto
// the chain and hands the batch to the sink as one transaction and one fsync.
// Before committing it yields, again while yielding still brings events (a
// few times at most), so that on a busy process the requests already
// runnable join the batch (an adaptive group-commit delay that costs
// nothing when the process is idle).
// In ModeSync (the default) Record returns only when its batch is durable, so
// a caller that discloses data after Record returned nil never discloses
// unaudited. Concurrent callers share commits, which keeps the cost of
// durability low. In ModeAsync Record returns as soon as the event is queued:
// lower latency, but events queued at a crash are lost and a failed write is
// only logged. In both modes a full queue makes Record wait (backpressure)
// until there is room or its context ends. Close flushes the queue and
// writes a final checkpoint.
//
// Every CheckpointEvery records or CheckpointInterval, the writer signs the
// chain head with the server's signing key, stores the checkpoint in the sink
// and writes its hash to the operational log, so a copy lives outside the
// audit store.
package trail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// Mode chooses between durable and fast recording.
type Mode string

// Modes.
const (
	ModeSync  Mode = "sync"  // Record returns after the event is durable (default)
	ModeAsync Mode = "async" // Record returns after the event is queued
)

// Errors.
var (
	ErrClosed  = errors.New("audit trail: closed")
	ErrOptions = errors.New("audit trail: invalid options")
	// ErrUnavailable wraps a failure to store an event; callers fail closed.
	ErrUnavailable = errors.New("audit trail: event not stored")
)

// Signer signs checkpoint claims as a compact JWS; *keys.Manager satisfies it.
type Signer interface {
	Sign(alg, typ string, claims any) (string, error)
}

// Options configure a Trail.
type Options struct {
	Sink chain.Sink // required
	Node string     // this node's chain name; required
	Mode Mode       // ModeSync when empty

	MaxBatch  int // most events per commit; 1024 when 0
	QueueSize int // queued events before Record blocks; 16384 when 0

	Signer             Signer        // signs checkpoints; unsigned checkpoints when nil
	SignAlg            string        // "ES256" when empty
	CheckpointEvery    int           // records between checkpoints; 10000 when 0, never when < 0
	CheckpointInterval time.Duration // time between checkpoints of a changed head; 1 minute when 0, never when < 0

	WriteTimeout time.Duration // bound on one sink write (callers fail closed after it); 5s when 0

	// Observe, when set, is called after each commit with the batch size,
	// the commit latency and the error (a hook for metrics).
	Observe func(batch int, latency time.Duration, err error)

	Logger *slog.Logger
	Now    func() time.Time
}

type request struct {
	ev    audit.Event
	flush bool
	done  chan error // nil in async mode
}

// Trail is a durable, hash-chained audit.Auditor. It is safe for concurrent use.
type Trail struct {
	opts Options
	q    chan request

	mu     sync.RWMutex // guards closed against sends on q
	closed bool
	done   chan struct{}

	// owned by the writer goroutine
	head      *chain.Entry
	headStale bool
	sinceCP   int
	lastCP    uint64
	lastCPAt  time.Time

	signer  atomic.Pointer[signerBox]
	observe atomic.Pointer[func(batch int, latency time.Duration, err error)]
	depth   atomic.Int64
	dropped atomic.Int64
}

type signerBox struct{ Signer }

var _ audit.Auditor = (*Trail)(nil)

// New validates opts, reads the node's chain head from the sink and starts
// the writer.
func New(ctx context.Context, opts Options) (*Trail, error) {
	switch {
	case opts.Sink == nil:
		return nil, fmt.Errorf("%w: Sink is required", ErrOptions)
	case opts.Node == "":
		return nil, fmt.Errorf("%w: Node is required", ErrOptions)
	case opts.Mode == "":
		opts.Mode = ModeSync
	case opts.Mode != ModeSync && opts.Mode != ModeAsync:
		return nil, fmt.Errorf("%w: Mode must be sync or async, got %q", ErrOptions, opts.Mode)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 16384
	}
	if opts.SignAlg == "" {
		opts.SignAlg = "ES256"
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = 10000
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = time.Minute
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Trail{opts: opts, q: make(chan request, opts.QueueSize), done: make(chan struct{})}
	if err := t.loadHead(ctx); err != nil {
		return nil, err
	}
	cps, err := opts.Sink.Checkpoints(ctx, opts.Node)
	if err != nil {
		return nil, fmt.Errorf("audit trail: read checkpoints: %w", err)
	}
	if len(cps) > 0 {
		t.lastCP = cps[len(cps)-1].Seq
	}
	t.lastCPAt = opts.Now()
	if opts.Signer != nil {
		t.signer.Store(&signerBox{opts.Signer})
	}
	if opts.Observe != nil {
		t.observe.Store(&opts.Observe)
	}
	go t.run()
	return t, nil
}

// SetSigner sets the checkpoint signer after construction (the signing keys
// are usually opened after the audit trail, since key rotation is audited).
func (t *Trail) SetSigner(s Signer) {
	if s == nil {
		t.signer.Store(nil)
		return
	}
	t.signer.Store(&signerBox{s})
}

// SetObserve replaces the commit observer (Options.Observe), for metrics
// wired after the trail was opened; nil removes it.
func (t *Trail) SetObserve(fn func(batch int, latency time.Duration, err error)) {
	if fn == nil {
		t.observe.Store(nil)
		return
	}
	t.observe.Store(&fn)
}

// Mode returns the recording mode.
func (t *Trail) Mode() Mode { return t.opts.Mode }

// QueueDepth returns the number of events waiting to be written.
func (t *Trail) QueueDepth() int { return int(t.depth.Load()) }

// Dropped returns how many async events could not be stored.
func (t *Trail) Dropped() int64 { return t.dropped.Load() }

// Record implements audit.Auditor. The event is redacted (audit.Redact)
// and stamped with the time if it has none. In ModeSync it returns nil only
// once the event is durable; an error wraps ErrUnavailable or ErrClosed and
// the caller must fail closed.
func (t *Trail) Record(ctx context.Context, e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = t.opts.Now()
	}
	r := request{ev: audit.Redact(e)}
	if t.opts.Mode == ModeSync {
		r.done = make(chan error, 1)
	}
	if err := t.send(ctx, r); err != nil {
		return err
	}
	if r.done == nil {
		return nil
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// Enqueue queues e without waiting for its batch to be durable, whatever
// the mode (audit.Enqueuer): for events recorded after disclosure. A full
// queue still makes it wait.
func (t *Trail) Enqueue(ctx context.Context, e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = t.opts.Now()
	}
	return t.send(ctx, request{ev: audit.Redact(e)})
}

func (t *Trail) send(ctx context.Context, r request) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return ErrClosed
	}
	t.depth.Add(1)
	select {
	case t.q <- r:
		return nil
	default:
	}
	select {
	case t.q <- r:
		return nil
	case <-ctx.Done():
		t.depth.Add(-1)
		return fmt.Errorf("%w: queue full: %w", ErrUnavailable, ctx.Err())
	}
}

// Flush waits until every event queued before it is durable (or failed).
func (t *Trail) Flush(ctx context.Context) error {
	r := request{flush: true, done: make(chan error, 1)}
	if err := t.send(ctx, r); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, writes everything queued, writes a final
// checkpoint and stops the writer. It does not close the sink.
func (t *Trail) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.q)
	t.mu.Unlock()
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit trail: close: %w", ctx.Err())
	}
}

func (t *Trail) loadHead(ctx context.Context) error {
	e, ok, err := t.opts.Sink.Head(ctx, t.opts.Node)
	if err != nil {
		return fmt.Errorf("audit trail: read chain head: %w", err)
	}
	t.head = nil
	if ok {
		t.head = &e
	}
	t.headStale = false
	return nil
}

func (t *Trail) run() {
	defer close(t.done)
	var tick <-chan time.Time
	if t.opts.CheckpointInterval > 0 {
		ticker := time.NewTicker(t.opts.CheckpointInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	batch := make([]request, 0, t.opts.MaxBatch)
	for {
		select {
		case r, ok := <-t.q:
			if !ok {
				t.checkpoint(true)
				return
			}
			batch = t.drain(append(batch[:0], r))
			if t.opts.Mode == ModeAsync && len(batch) < t.opts.MaxBatch {
				// Nobody waits on an async commit: linger so that one
				// commit (one fsync) takes many events.
				time.Sleep(asyncLinger)
				batch = t.drain(batch)
			}
			// Yield before committing: on a busy process the goroutines
			// already runnable reach the queue and share this commit (one
			// fsync) instead of each waiting for the next. Yield again
			// while a yield still brought events, up to maxYields; on an
			// idle process the first yield returns at once with nothing.
			for range maxYields {
				if len(batch) >= t.opts.MaxBatch {
					break
				}
				n := len(batch)
				runtime.Gosched()
				if batch = t.drain(batch); len(batch) == n {
					break
				}
			}
			t.commit(batch)
		case <-tick:
			if t.opts.Now().Sub(t.lastCPAt) >= t.opts.CheckpointInterval {
				t.checkpoint(false)
			}
		}
	}
}

// maxYields bounds the yields before one commit. In interleaved runs of the
// gateway benchmark at 64 clients: 0.53-0.55 of audit-off throughput with
// one yield, 0.63-0.73 with up to four; no change at 256 clients or on
// /token.
const maxYields = 4

// asyncLinger is how long the writer lets events gather before an async
// commit. It only widens the window of queued events a crash loses, which
// ModeAsync accepts anyway.
const asyncLinger = 2 * time.Millisecond

// drain appends what is queued to batch, up to MaxBatch, without waiting.
func (t *Trail) drain(batch []request) []request {
	for len(batch) < t.opts.MaxBatch {
		select {
		case r, ok := <-t.q:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit writes the events of batch in one sink append and answers every
// request in it.
func (t *Trail) commit(batch []request) {
	t.depth.Add(-int64(len(batch)))
	events := make([]audit.Event, 0, len(batch))
	for _, r := range batch {
		if !r.flush {
			events = append(events, r.ev)
		}
	}
	var err error
	if len(events) > 0 {
		start := time.Now()
		err = t.write(events)
		if fn := t.observe.Load(); fn != nil {
			(*fn)(len(events), time.Since(start), err)
		}
		if err != nil {
			t.opts.Logger.Error("audit write failed", "node", t.opts.Node, "events", len(events), "err", err)
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			if t.opts.Mode == ModeAsync {
				t.dropped.Add(int64(len(events)))
			}
		}
	}
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
	}
	if err == nil && t.opts.CheckpointEvery > 0 && t.sinceCP >= t.opts.CheckpointEvery {
		t.checkpoint(false)
	}
}

func (t *Trail) write(events []audit.Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.WriteTimeout)
	defer cancel()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if t.headStale {
			if err := t.loadHead(ctx); err != nil {
				return err
			}
		}
		entries := make([]chain.Entry, len(events))
		prev := t.head
		for i, ev := range events {
			entries[i] = chain.Link(t.opts.Node, prev, ev)
			prev = &entries[i]
		}
		err = t.opts.Sink.Append(ctx, entries)
		if err == nil {
			t.head = prev
			t.sinceCP += len(entries)
			return nil
		}
		// The outcome of a failed append is uncertain (a commit may have
		// landed before the error): re-read the head before the next write.
		t.headStale = true
		if !errors.Is(err, chain.ErrConflict) {
			return err
		}
	}
	return err
}

// checkpoint signs and stores the current head if it moved since the last
// checkpoint.
func (t *Trail) checkpoint(final bool) {
	if t.headStale {
		ctx, cancel := context.WithTimeout(context.Background(), t.opts.WriteTimeout)
		err := t.loadHead(ctx)
		cancel()
		if err != nil {
			t.opts.Logger.Error("audit checkpoint: read head", "node", t.opts.Node, "err", err)
			return
		}
	}
	t.lastCPAt = t.opts.Now()
	if t.head == nil || t.head.Seq == t.lastCP {
		return
	}
	if t.opts.CheckpointEvery < 0 && t.opts.CheckpointInterval < 0 && !final {
		return
	}
	cp := chain.Checkpoint{Node: t.opts.Node, Seq: t.head.Seq, Hash: t.head.Hash, Time: t.opts.Now().UTC().Truncate(time.Microsecond)}
	if sb := t.signer.Load(); sb != nil {
		sig, err := sb.Sign(t.opts.SignAlg, chain.CheckpointType, cp.Claims())
		if err != nil {
			t.opts.Logger.Error("audit checkpoint: sign", "node", cp.Node, "seq", cp.Seq, "err", err)
		} else {
			cp.Signature = sig
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.WriteTimeout)
	defer cancel()
	if err := t.opts.Sink.SaveCheckpoint(ctx, cp); err != nil {
		t.opts.Logger.Error("audit checkpoint: store", "node", cp.Node, "seq", cp.Seq, "err", err)
		return
	}
	t.lastCP, t.sinceCP = cp.Seq, 0
	t.opts.Logger.Info("audit checkpoint", "node", cp.Node, "seq", cp.Seq,
		"hash", fmt.Sprintf("%x", cp.Hash), "signed", cp.Signature != "", "final", final)
}
