// Package trail is the durable audit trail: an audit.Auditor that hash-chains
// events (package chain) and writes them to a chain.Sink with group commit.
//
// One writer goroutine owns the chain head of this node. Record appends the
// event to the group being gathered; the writer takes the whole group, links
// it onto the chain and hands it to the sink as one transaction and one
// fsync (several, of at most MaxBatch events each, for a large backlog).
// Every caller of a group waits on the group's one channel, which the writer
// closes once the group is durable or failed: no channel or queue slot per
// event.
// Before committing it yields, again while yielding still brings events (a
// few times at most), so that on a busy process the requests already
// runnable join the batch (an adaptive group-commit delay that costs
// nothing when the process is idle).
// In ModeSync (the default) Record returns only when its batch is durable, so
// a caller that discloses data after Record returned nil never discloses
// unaudited. Concurrent callers share commits, which keeps the cost of
// durability low. In ModeAsync Record returns as soon as the event is queued:
// lower latency, but events queued at a crash are lost and a failed write is
// only logged. In both modes, while QueueSize events wait for the writer to
// take them, Record waits (backpressure) until the writer takes them or its
// context ends. Close writes everything queued and a final checkpoint.
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
	"slices"
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
	QueueSize int // events waiting for the writer before Record blocks (the writer may hold as many again); 16384 when 0

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

// group is the events recorded between two takes by the writer, and how
// their callers learn the outcome: done is closed once every event is
// durable or failed, err (set before done closes) says which. taken is
// closed when the writer takes the group, which makes room in the queue.
type group struct {
	events []audit.Event
	flush  bool // a Flush waits on this group
	taken  chan struct{}
	done   chan struct{}
	err    error
}

func newGroup(capacity int) *group {
	return &group{events: make([]audit.Event, 0, capacity), taken: make(chan struct{}), done: make(chan struct{})}
}

// Trail is a durable, hash-chained audit.Auditor. It is safe for concurrent use.
type Trail struct {
	opts Options

	mu      sync.Mutex // guards cur and closed
	cur     *group     // the group being gathered
	closed  bool
	wake    chan struct{} // holds a token while cur has something for the writer
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the writer has stopped

	// owned by the writer goroutine
	head      *chain.Entry
	headStale bool
	sinceCP   int
	lastCP    uint64
	lastCPAt  time.Time
	events    []audit.Event // reused: the events of one commit, when several groups join
	entries   []chain.Entry // reused: one commit's linked entries

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
	t := &Trail{opts: opts, cur: newGroup(0), wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
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
	g, err := t.add(ctx, audit.Redact(e), false)
	if err != nil || t.opts.Mode == ModeAsync {
		return err
	}
	select {
	case <-g.done:
		return g.err
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
	_, err := t.add(ctx, audit.Redact(e), false)
	return err
}

// Flush waits until every event queued before it is durable (or failed).
func (t *Trail) Flush(ctx context.Context) error {
	g, err := t.add(ctx, audit.Event{}, true)
	if err != nil {
		return err
	}
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add appends e (or, for a flush, only the wish to be told) to the group
// being gathered and returns that group. While QueueSize events wait there
// it waits for the writer to take them, or for ctx to end.
func (t *Trail) add(ctx context.Context, e audit.Event, flush bool) (*group, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, ErrClosed
		}
		g := t.cur
		if flush || len(g.events) < t.opts.QueueSize {
			first := len(g.events) == 0 && !g.flush
			if flush {
				g.flush = true
			} else {
				g.events = append(g.events, e)
				t.depth.Add(1)
			}
			t.mu.Unlock()
			if first {
				select {
				case t.wake <- struct{}{}:
				default:
				}
			}
			return g, nil
		}
		t.mu.Unlock()
		select {
		case <-g.taken:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: queue full: %w", ErrUnavailable, ctx.Err())
		}
	}
}

// take hands the group being gathered to the writer and starts a new one
// (sized like the last, so that appends rarely grow it); nil when there is
// nothing to take.
func (t *Trail) take() *group {
	t.mu.Lock()
	g := t.cur
	if len(g.events) == 0 && !g.flush {
		t.mu.Unlock()
		return nil
	}
	t.cur = newGroup(min(len(g.events), t.opts.MaxBatch))
	t.mu.Unlock()
	close(g.taken)
	return g
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
	close(t.closing)
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
	var groups []*group
	for {
		select {
		case <-t.wake:
			g := t.take()
			if g == nil {
				continue
			}
			groups = append(groups[:0], g)
			n := len(g.events)
			if t.opts.Mode == ModeAsync && n < t.opts.MaxBatch {
				// Nobody waits on an async commit: linger so that one
				// commit (one fsync) takes many events.
				time.Sleep(asyncLinger)
				if g := t.take(); g != nil {
					groups, n = append(groups, g), n+len(g.events)
				}
			}
			// Yield before committing: on a busy process the goroutines
			// already runnable record their events and share this commit
			// (one fsync) instead of each waiting for the next. Yield again
			// while a yield still brought events, up to maxYields; on an
			// idle process the first yield returns at once with nothing.
			for range maxYields {
				if n >= t.opts.MaxBatch {
					break
				}
				runtime.Gosched()
				g := t.take()
				if g == nil {
					break
				}
				groups, n = append(groups, g), n+len(g.events)
			}
			t.commit(groups)
			clear(groups)
		case <-tick:
			if t.opts.Now().Sub(t.lastCPAt) >= t.opts.CheckpointInterval {
				t.checkpoint(false)
			}
		case <-t.closing:
			// Close set closed under mu: no event joins after this take.
			if g := t.take(); g != nil {
				t.commit([]*group{g})
			}
			t.checkpoint(true)
			return
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

// commit writes the events of groups in sink appends of at most MaxBatch
// events, in order, and tells each group's callers the outcome: the error
// of any append that held one of its events, else nil.
func (t *Trail) commit(groups []*group) {
	events := groups[0].events
	if len(groups) > 1 {
		events = t.events[:0]
		for _, g := range groups {
			events = append(events, g.events...)
		}
		t.events = events
	}
	t.depth.Add(-int64(len(events)))
	// errs[i] is the error of the append that wrote events[i:...]; the
	// appends are cut at multiples of MaxBatch.
	var errs []error
	for off := 0; off < len(events); off += t.opts.MaxBatch {
		errs = append(errs, t.append(events[off:min(off+t.opts.MaxBatch, len(events))]))
	}
	off := 0
	for _, g := range groups {
		for i := off / t.opts.MaxBatch; len(g.events) > 0 && i <= (off+len(g.events)-1)/t.opts.MaxBatch; i++ {
			if errs[i] != nil {
				g.err = errs[i]
				break
			}
		}
		off += len(g.events)
		close(g.done)
	}
	if len(groups) > 1 {
		clear(t.events) // drop the strings until the next commit
	}
	if t.opts.CheckpointEvery > 0 && t.sinceCP >= t.opts.CheckpointEvery {
		t.checkpoint(false)
	}
}

// append writes events in one sink append, reports it to the observer and
// returns the error the callers see.
func (t *Trail) append(events []audit.Event) error {
	start := time.Now()
	err := t.write(events)
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
	return err
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
		entries := slices.Grow(t.entries[:0], len(events))[:len(events)]
		t.entries = entries
		prev := t.head
		for i, ev := range events {
			entries[i] = chain.Link(t.opts.Node, prev, ev)
			prev = &entries[i]
		}
		err = t.opts.Sink.Append(ctx, entries)
		if err == nil {
			head := entries[len(entries)-1]
			t.head = &head
			t.sinceCP += len(entries)
			clear(entries) // drop the strings until the next commit
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
