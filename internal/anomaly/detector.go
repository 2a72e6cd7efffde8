package anomaly

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/metrics"
	"github.com/fhirgate/fhirgate/internal/secret"
)

// Kind is what an Observation reports.
type Kind int

// Observation kinds.
const (
	// Request is one answered request (gateway or authorization server).
	Request Kind = iota + 1
	// RefreshReuse is a rotated-out refresh token presented again.
	RefreshReuse
	// Replay is a DPoP proof or client assertion presented twice.
	Replay
	// TokenInURL is an access token found in a URL query or form body.
	TokenInURL
)

// Observation is one thing the detector is told about. It carries only
// identifiers, never a token.
type Observation struct {
	Kind     Kind
	Time     time.Time // the detector's clock when zero
	ClientID string
	UserID   string
	IP       string
	// Patient is the patient compartment a Request touched, if any.
	Patient string
	// Status is the HTTP status a Request was answered with.
	Status int
	// Detail says what was replayed ("dpop", "client_assertion"), where a
	// token was seen, and so on: a fixed word, never request data.
	Detail string
}

// Notifier is told about each raised and cleared anomaly (the webhook).
type Notifier interface {
	Notify(ctx context.Context, event string, a Anomaly) error
}

// Notification events.
const (
	EventRaised  = "anomaly.raised"
	EventCleared = "anomaly.cleared"
)

// Options configure New.
type Options struct {
	Config Config
	// Store keeps anomalies; an in-process Memory store when nil.
	Store Store
	// Auditor records each raised and cleared anomaly (required).
	Auditor audit.Auditor
	// Notifier, when set, is told about each anomaly in the background.
	Notifier Notifier
	// Metrics counts anomalies (optional).
	Metrics *metrics.Registry
	Logger  *slog.Logger
	Now     func() time.Time
	// Refresh is how often the in-force throttles and suspensions are
	// re-read from the Store, so that several nodes sharing a store agree
	// (DefaultRefresh when zero).
	Refresh time.Duration
	// MaxSubjects bounds the clients, users and addresses tracked per rule
	// (DefaultMaxSubjects when zero); beyond it new subjects are not
	// tracked until idle ones are swept.
	MaxSubjects int
	// QueueSize bounds the background notification queue (DefaultQueueSize).
	QueueSize int
}

// Defaults.
const (
	DefaultRefresh     = 5 * time.Second
	DefaultMaxSubjects = 100_000
	DefaultQueueSize   = 1024
	eventCooldown      = time.Minute
	numShards          = 32
	notifyConcurrency  = 4
)

// Detector watches traffic and raises anomalies. Its methods are safe for
// concurrent use and never block on I/O other than its Store.
type Detector struct {
	cfg      Config
	store    Store
	auditor  audit.Auditor
	notifier Notifier
	metrics  *metrics.Registry
	log      *slog.Logger
	now      func() time.Time
	refresh  time.Duration
	maxSubj  int

	seed   maphash.Seed
	shards [numShards]shard

	raiseMu   sync.Mutex
	lastRaise map[string]time.Time // rule|subject -> last raised

	activeMu sync.RWMutex
	active   map[Subject][]Anomaly

	queue   chan notification
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once
	ctx     context.Context
	cancel  context.CancelFunc
}

type shard struct {
	mu      sync.Mutex
	clients map[string]*clientState
	users   map[string]*userState
	fails   map[string]*failState
}

type clientState struct {
	rate      *ring
	firstSeen time.Time
	lastSeen  time.Time
}

type userState struct {
	patients map[string]time.Time
	lastSeen time.Time
}

type failState struct {
	r        *ring
	lastSeen time.Time
}

type notification struct {
	event string
	a     Anomaly
}

// New returns a running detector; Close stops it.
func New(opts Options) (*Detector, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Auditor == nil {
		return nil, errors.New("anomaly: Auditor is required")
	}
	if opts.Store == nil {
		opts.Store = NewMemory(0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.MaxSubjects <= 0 {
		opts.MaxSubjects = DefaultMaxSubjects
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	d := &Detector{
		cfg: opts.Config.withDefaults(), store: opts.Store, auditor: opts.Auditor, notifier: opts.Notifier,
		metrics: opts.Metrics, log: opts.Logger, now: opts.Now, refresh: opts.Refresh,
		maxSubj: opts.MaxSubjects / numShards, seed: maphash.MakeSeed(),
		lastRaise: map[string]time.Time{}, active: map[Subject][]Anomaly{},
		queue: make(chan notification, opts.QueueSize), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if d.maxSubj < 1 {
		d.maxSubj = 1
	}
	for i := range d.shards {
		d.shards[i] = shard{clients: map[string]*clientState{}, users: map[string]*userState{}, fails: map[string]*failState{}}
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if err := d.reload(d.ctx); err != nil {
		d.cancel()
		return nil, fmt.Errorf("anomaly: load active anomalies: %w", err)
	}
	go d.run()
	return d, nil
}

// Config returns the effective configuration (defaults filled in).
func (d *Detector) Config() Config { return d.cfg }

func (d *Detector) shard(key string) *shard {
	return &d.shards[maphash.String(d.seed, key)%numShards]
}

// Observe feeds one observation to every rule. It is cheap and never
// blocks on I/O except the Store write of a raised anomaly.
func (d *Detector) Observe(o Observation) {
	if d == nil {
		return
	}
	if o.Time.IsZero() {
		o.Time = d.now()
	}
	switch o.Kind {
	case Request:
		d.observeRequest(o)
	case RefreshReuse:
		d.raise(RuleRefreshReuse, userOrClient(o), o, "a rotated-out refresh token was presented again", eventCooldown)
	case Replay:
		what := o.Detail
		if what == "" {
			what = "a one-time value"
		}
		d.raise(RuleReplay, clientOrIP(o), o, what+" was replayed", eventCooldown)
	case TokenInURL:
		where := o.Detail
		if where == "" {
			where = "a URL"
		}
		d.raise(RuleTokenInURL, userOrClient(o), o, "an access token was sent in "+where, eventCooldown)
	}
}

func userOrClient(o Observation) Subject {
	switch {
	case o.UserID != "":
		return Subject{SubjectUser, o.UserID}
	case o.ClientID != "":
		return Subject{SubjectClient, o.ClientID}
	}
	return Subject{SubjectIP, o.IP}
}

func clientOrIP(o Observation) Subject {
	if o.ClientID != "" {
		return Subject{SubjectClient, o.ClientID}
	}
	return Subject{SubjectIP, o.IP}
}

func (d *Detector) observeRequest(o Observation) {
	now := o.Time
	if o.ClientID != "" {
		if detail, fire := d.rateSpike(o.ClientID, now); fire {
			d.raise(RuleRateSpike, Subject{SubjectClient, o.ClientID}, o, detail, d.cfg.RateSpike.Window)
		}
	}
	if o.Patient != "" && (o.UserID != "" || o.ClientID != "") && o.Status < 400 {
		s := userOrClient(o)
		if n, fire := d.scraping(s.String(), o.Patient, now); fire {
			d.raise(RulePatientScraping, s, o,
				fmt.Sprintf("%d distinct patients within %s (limit %d)", n, d.cfg.Scraping.Window, d.cfg.Scraping.MaxPatients),
				d.cfg.Scraping.Window)
		}
	}
	if o.Status == 401 || o.Status == 403 {
		s := clientOrIP(o)
		if s.ID != "" {
			if n, fire := d.authFailures(s.String(), now); fire {
				d.raise(RuleAuthFailures, s, o,
					fmt.Sprintf("%d refusals (401/403) within %s", n, d.cfg.AuthFailures.Window), d.cfg.AuthFailures.Window)
			}
		}
	}
}

// rateSpike counts a request of client and judges its recent rate.
func (d *Detector) rateSpike(client string, now time.Time) (string, bool) {
	c := d.cfg.RateSpike
	const perWindow = 4
	width := c.Window / perWindow
	baseBuckets := int(c.Baseline / width)
	sh := d.shard("c" + client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, ok := sh.clients[client]
	if !ok {
		if len(sh.clients) >= d.maxSubj {
			return "", false
		}
		st = &clientState{rate: newRing(width, perWindow+baseBuckets), firstSeen: now}
		sh.clients[client] = st
	}
	st.lastSeen = now
	st.rate.add(now)
	cur := st.rate.sum(now, 0, perWindow)
	if cur < uint64(c.MinRequests) || now.Sub(st.firstSeen) < c.MinHistory {
		return "", false
	}
	// The baseline covers the time seen before the current window, at most Baseline.
	span := min(now.Sub(st.firstSeen)-c.Window, c.Baseline)
	if span < width {
		return "", false
	}
	n := int(span / width)
	base := float64(st.rate.sum(now, perWindow, n)) / (float64(n) / perWindow)
	if float64(cur) <= c.Factor*max(base, 1) {
		return "", false
	}
	return fmt.Sprintf("%d requests in %s against a baseline of %.1f per %s", cur, c.Window, base, c.Window), true
}

// scraping records that subject touched patient and reports the distinct
// patients within the window when above the limit.
func (d *Detector) scraping(subject, patient string, now time.Time) (int, bool) {
	c := d.cfg.Scraping
	sh := d.shard("u" + subject)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, ok := sh.users[subject]
	if !ok {
		if len(sh.users) >= d.maxSubj {
			return 0, false
		}
		st = &userState{patients: map[string]time.Time{}}
		sh.users[subject] = st
	}
	st.lastSeen = now
	if _, seen := st.patients[patient]; !seen && len(st.patients) >= 2*c.MaxPatients+1 {
		// Bounded: the limit is long exceeded; stop growing.
		return len(st.patients), true
	}
	st.patients[patient] = now
	if len(st.patients) <= c.MaxPatients {
		return len(st.patients), false
	}
	cutoff := now.Add(-c.Window)
	for p, t := range st.patients {
		if !t.After(cutoff) {
			delete(st.patients, p)
		}
	}
	n := len(st.patients)
	return n, n > c.MaxPatients
}

// authFailures counts a 401/403 for key.
func (d *Detector) authFailures(key string, now time.Time) (uint64, bool) {
	c := d.cfg.AuthFailures
	const buckets = 6
	sh := d.shard("f" + key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, ok := sh.fails[key]
	if !ok {
		if len(sh.fails) >= d.maxSubj {
			return 0, false
		}
		st = &failState{r: newRing(c.Window/buckets, buckets)}
		sh.fails[key] = st
	}
	st.lastSeen = now
	st.r.add(now)
	n := st.r.sum(now, 0, buckets)
	return n, n >= uint64(c.Max)
}

// raise records an anomaly unless the same rule fired for the same subject
// within cooldown or its action is still in force.
func (d *Detector) raise(rule Rule, s Subject, o Observation, detail string, cooldown time.Duration) {
	if s.ID == "" {
		return
	}
	now := o.Time
	key := string(rule) + "|" + s.String()
	d.raiseMu.Lock()
	if last, ok := d.lastRaise[key]; ok && now.Sub(last) < cooldown {
		d.raiseMu.Unlock()
		return
	}
	if d.activeRule(s, rule, now) {
		d.raiseMu.Unlock()
		return
	}
	d.lastRaise[key] = now
	d.raiseMu.Unlock()

	a := Anomaly{
		ID: secret.ID(), Rule: rule, Action: d.cfg.action(rule), Subject: s,
		ClientID: o.ClientID, UserID: o.UserID, IP: o.IP, Detail: detail, RaisedAt: now,
	}
	switch a.Action {
	case ActionThrottle:
		a.Until = now.Add(d.cfg.ThrottleFor)
	case ActionSuspend:
		if d.cfg.SuspendFor > 0 {
			a.Until = now.Add(d.cfg.SuspendFor)
		}
	}
	if err := d.store.Add(context.WithoutCancel(d.ctx), &a); err != nil {
		d.log.Error("anomaly: store", "rule", rule, "subject", s.String(), "err", err)
	}
	if a.Action != ActionRecord {
		d.activeMu.Lock()
		d.active[s] = append(d.active[s], a)
		d.activeMu.Unlock()
	}
	d.metrics.Anomaly(string(rule), string(a.Action))
	d.log.Warn("anomaly raised", "id", a.ID, "rule", rule, "action", a.Action, "subject", s.String(), "detail", detail)
	d.enqueue(EventRaised, a)
}

func (d *Detector) activeRule(s Subject, rule Rule, now time.Time) bool {
	d.activeMu.RLock()
	defer d.activeMu.RUnlock()
	for _, a := range d.active[s] {
		if a.Rule == rule && a.Active(now) {
			return true
		}
	}
	return false
}

func (d *Detector) enqueue(event string, a Anomaly) {
	select {
	case d.queue <- notification{event, a}:
	default:
		d.log.Error("anomaly: notification queue full; audit and webhook of this anomaly dropped", "id", a.ID, "rule", a.Rule)
	}
}

// Verdict is what is in force against a request's client, user or address.
type Verdict struct {
	// Action is the strongest action in force (ActionRecord when none).
	Action Action
	// Anomaly is the anomaly that imposed it.
	Anomaly *Anomaly
}

// Suspended reports whether the request must be refused.
func (v Verdict) Suspended() bool { return v.Action == ActionSuspend }

// Throttled reports whether the request gets the throttle budget.
func (v Verdict) Throttled() bool { return v.Action == ActionThrottle }

// Check returns the strongest throttle or suspension in force against the
// client, the user or the source address (empty ones are skipped).
func (d *Detector) Check(clientID, userID, ip string) Verdict {
	v := Verdict{Action: ActionRecord}
	if d == nil {
		return v
	}
	now := d.now()
	d.activeMu.RLock()
	defer d.activeMu.RUnlock()
	for _, s := range [...]Subject{{SubjectClient, clientID}, {SubjectUser, userID}, {SubjectIP, ip}} {
		if s.ID == "" {
			continue
		}
		for _, a := range d.active[s] {
			if a.Active(now) && a.Action.strength() > v.Action.strength() {
				v.Action, v.Anomaly = a.Action, &a
			}
		}
	}
	return v
}

// List returns stored anomalies, newest first.
func (d *Detector) List(ctx context.Context, opts ListOptions) ([]Anomaly, error) {
	return d.store.List(ctx, opts)
}

// Clear clears the anomaly id (lifting its throttle or suspension), audits
// it as done by by, and returns it.
func (d *Detector) Clear(ctx context.Context, id, by string) (*Anomaly, error) {
	a, err := d.store.Clear(ctx, id, by, d.now())
	if err != nil {
		return nil, err
	}
	d.forget(*a)
	d.enqueue(EventCleared, *a)
	return a, nil
}

// ClearSubject clears every anomaly about s.
func (d *Detector) ClearSubject(ctx context.Context, s Subject, by string) ([]Anomaly, error) {
	as, err := d.store.ClearSubject(ctx, s, by, d.now())
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		d.forget(a)
		d.enqueue(EventCleared, a)
	}
	return as, nil
}

func (d *Detector) forget(a Anomaly) {
	d.activeMu.Lock()
	defer d.activeMu.Unlock()
	list := d.active[a.Subject][:0]
	for _, x := range d.active[a.Subject] {
		if x.ID != a.ID {
			list = append(list, x)
		}
	}
	if len(list) == 0 {
		delete(d.active, a.Subject)
	} else {
		d.active[a.Subject] = list
	}
	d.raiseMu.Lock()
	delete(d.lastRaise, string(a.Rule)+"|"+a.Subject.String())
	d.raiseMu.Unlock()
}

// reload replaces the in-force set with the Store's.
func (d *Detector) reload(ctx context.Context) error {
	as, err := d.store.Active(ctx, d.now())
	if err != nil {
		return err
	}
	m := make(map[Subject][]Anomaly, len(as))
	for _, a := range as {
		m[a.Subject] = append(m[a.Subject], a)
	}
	d.activeMu.Lock()
	d.active = m
	d.activeMu.Unlock()
	return nil
}

// Sweep forgets subjects idle for longer than every rule's window, and
// expired cooldowns. The background loop calls it; tests may too.
func (d *Detector) Sweep() {
	now := d.now()
	idle := max(d.cfg.RateSpike.Baseline+d.cfg.RateSpike.Window, d.cfg.Scraping.Window, d.cfg.AuthFailures.Window)
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		for k, st := range sh.clients {
			if now.Sub(st.lastSeen) > idle {
				delete(sh.clients, k)
			}
		}
		for k, st := range sh.users {
			if now.Sub(st.lastSeen) > idle {
				delete(sh.users, k)
			}
		}
		for k, st := range sh.fails {
			if now.Sub(st.lastSeen) > idle {
				delete(sh.fails, k)
			}
		}
		sh.mu.Unlock()
	}
	d.raiseMu.Lock()
	for k, t := range d.lastRaise {
		if now.Sub(t) > idle {
			delete(d.lastRaise, k)
		}
	}
	d.raiseMu.Unlock()
}

func (d *Detector) run() {
	defer close(d.done)
	tick := time.NewTicker(d.refresh)
	defer tick.Stop()
	sem := make(chan struct{}, notifyConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	sweeps := 0
	for {
		select {
		case n := <-d.queue:
			d.deliver(n, sem, &wg)
		case <-tick.C:
			if err := d.reload(d.ctx); err != nil {
				d.log.Warn("anomaly: reload active anomalies", "err", err)
			}
			if sweeps++; sweeps%12 == 0 {
				d.Sweep()
			}
		case <-d.stop:
			for {
				select {
				case n := <-d.queue:
					d.deliver(n, sem, &wg)
				default:
					return
				}
			}
		}
	}
}

// deliver audits n and hands it to the notifier without waiting for it.
func (d *Detector) deliver(n notification, sem chan struct{}, wg *sync.WaitGroup) {
	a := n.a
	ev := audit.Event{
		Time: a.RaisedAt, Action: AuditRaised, Outcome: audit.Failure,
		Reason: fmt.Sprintf("%s (%s %s): %s", a.Rule, a.Action, a.Subject, a.Detail),
		UserID: a.UserID, ClientID: a.ClientID, SourceIP: a.IP, RequestID: a.ID,
	}
	if n.event == EventCleared {
		ev.Time, ev.Action, ev.Outcome = a.ClearedAt, AuditCleared, audit.Success
		ev.Reason = fmt.Sprintf("%s (%s %s) cleared by %s", a.Rule, a.Action, a.Subject, a.ClearedBy)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), 10*time.Second)
	if err := d.auditor.Record(actx, ev); err != nil {
		d.log.Error("anomaly: audit", "id", a.ID, "err", err)
	}
	cancel()
	if d.notifier == nil {
		return
	}
	sem <- struct{}{}
	wg.Add(1)
	go func() {
		defer func() { <-sem; wg.Done() }()
		if err := d.notifier.Notify(d.ctx, n.event, a); err != nil {
			d.log.Error("anomaly: webhook", "id", a.ID, "event", n.event, "err", err)
		}
	}()
}

// Close stops the background loop after delivering queued notifications,
// waiting for webhooks in flight until ctx ends (then cancelling them).
func (d *Detector) Close(ctx context.Context) error {
	if d == nil {
		return nil
	}
	d.closeMu.Do(func() { close(d.stop) })
	select {
	case <-d.done:
		d.cancel()
		return nil
	case <-ctx.Done():
		d.cancel()
		<-d.done
		return ctx.Err()
	}
}
