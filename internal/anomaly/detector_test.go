package anomaly_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/metrics"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) count(a audit.Action) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Action == a {
			n++
		}
	}
	return n
}

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func newDetector(t *testing.T, cfg anomaly.Config) (*anomaly.Detector, *clock, *recorder) {
	t.Helper()
	clk := &clock{t: t0}
	rec := &recorder{}
	d, err := anomaly.New(anomaly.Options{Config: cfg, Auditor: rec, Now: clk.Now, Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d, clk, rec
}

func list(t *testing.T, d *anomaly.Detector) []anomaly.Anomaly {
	t.Helper()
	as, err := d.List(context.Background(), anomaly.ListOptions{IncludeCleared: true})
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func byRule(as []anomaly.Anomaly, r anomaly.Rule) []anomaly.Anomaly {
	var out []anomaly.Anomaly
	for _, a := range as {
		if a.Rule == r {
			out = append(out, a)
		}
	}
	return out
}

// steady sends perMinute requests each minute for minutes, evenly spread.
func steady(d *anomaly.Detector, clk *clock, o anomaly.Observation, perMinute, minutes int) {
	gap := time.Minute / time.Duration(perMinute)
	for range minutes * perMinute {
		o.Time = clk.Now()
		d.Observe(o)
		clk.Advance(gap)
	}
}

func req(client, user, patient string, status int) anomaly.Observation {
	return anomaly.Observation{Kind: anomaly.Request, ClientID: client, UserID: user, IP: "198.51.100.7", Patient: patient, Status: status}
}

func TestRateSpikeFires(t *testing.T) {
	d, clk, rec := newDetector(t, anomaly.Config{})
	steady(d, clk, req("app", "", "", 200), 30, 60) // an hour at 30/min
	if as := list(t, d); len(as) != 0 {
		t.Fatalf("steady traffic raised %v", as)
	}
	steady(d, clk, req("app", "", "", 200), 600, 1) // 20x the baseline
	spikes := byRule(list(t, d), anomaly.RuleRateSpike)
	if len(spikes) != 1 {
		t.Fatalf("a 20x burst raised %d rate_spike anomalies, want 1", len(spikes))
	}
	a := spikes[0]
	if a.Subject != (anomaly.Subject{Kind: anomaly.SubjectClient, ID: "app"}) || a.Action != anomaly.ActionThrottle {
		t.Fatalf("anomaly = %+v", a)
	}
	if v := d.Check("app", "", ""); !v.Throttled() || v.Anomaly.ID != a.ID {
		t.Fatalf("Check after a spike = %+v, want throttled", v)
	}
	if v := d.Check("other", "", ""); v.Action != anomaly.ActionRecord {
		t.Fatalf("another client is affected: %+v", v)
	}
	// The throttle lapses after throttle_for.
	clk.Advance(anomaly.DefaultThrottleFor)
	if v := d.Check("app", "", ""); v.Throttled() {
		t.Fatal("throttle outlived throttle_for")
	}
	waitFor(t, func() bool { return rec.count(anomaly.AuditRaised) == 1 })
}

func TestRateSpikeQuietOnOrdinaryTraffic(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{})
	// Two hours of a busy client whose load varies within 3x and grows slowly.
	for m := range 120 {
		rate := 100 + m*2
		if m%10 == 0 {
			rate *= 3
		}
		steady(d, clk, req("busy", "", "", 200), rate, 1)
	}
	// A brand-new client has no baseline to be judged against.
	steady(d, clk, req("new", "", "", 200), 1000, 5)
	if as := list(t, d); len(as) != 0 {
		t.Fatalf("ordinary traffic raised %+v", as)
	}
}

func TestPatientScrapingFires(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{Scraping: anomaly.ScrapingConfig{Action: anomaly.ActionSuspend, MaxPatients: 50}})
	for i := range 80 {
		o := req("app", "u-scraper", fmt.Sprintf("p%d", i), 200)
		o.Time = clk.Now()
		d.Observe(o)
		clk.Advance(20 * time.Second)
	}
	got := byRule(list(t, d), anomaly.RulePatientScraping)
	if len(got) != 1 || got[0].Subject != (anomaly.Subject{Kind: anomaly.SubjectUser, ID: "u-scraper"}) {
		t.Fatalf("scraping anomalies = %+v, want one about the user", got)
	}
	if v := d.Check("app", "u-scraper", ""); !v.Suspended() {
		t.Fatalf("Check = %+v, want suspended", v)
	}
	// The client's other users are not suspended.
	if v := d.Check("app", "u-other", ""); v.Suspended() {
		t.Fatal("a suspension of one user suspended the client")
	}
}

func TestPatientScrapingQuietOnOrdinaryTraffic(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{Scraping: anomaly.ScrapingConfig{MaxPatients: 50}})
	// A clinician sees 30 patients, over and over, all day.
	for i := range 2000 {
		o := req("ehr-app", "dr-who", fmt.Sprintf("p%d", i%30), 200)
		o.Time = clk.Now()
		d.Observe(o)
		clk.Advance(15 * time.Second)
	}
	// Another sees 300 different patients across ten hours (30 an hour).
	for i := range 300 {
		o := req("ehr-app", "dr-busy", fmt.Sprintf("q%d", i), 200)
		o.Time = clk.Now()
		d.Observe(o)
		clk.Advance(2 * time.Minute)
	}
	// Refused requests do not count as touching a patient.
	for i := range 100 {
		o := req("ehr-app", "dr-denied", fmt.Sprintf("r%d", i), 403)
		o.Time = clk.Now()
		d.Observe(o)
		clk.Advance(time.Minute)
	}
	if got := byRule(list(t, d), anomaly.RulePatientScraping); len(got) != 0 {
		t.Fatalf("ordinary clinical use raised %+v", got)
	}
}

func TestAuthFailuresFire(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{AuthFailures: anomaly.AuthFailuresConfig{Max: 20}})
	// Without a known client, failures count against the source address.
	for range 25 {
		o := anomaly.Observation{Kind: anomaly.Request, IP: "203.0.113.9", Status: 401, Time: clk.Now()}
		d.Observe(o)
		clk.Advance(time.Second)
	}
	got := byRule(list(t, d), anomaly.RuleAuthFailures)
	if len(got) != 1 || got[0].Subject != (anomaly.Subject{Kind: anomaly.SubjectIP, ID: "203.0.113.9"}) {
		t.Fatalf("auth_failures anomalies = %+v", got)
	}
	if v := d.Check("", "", "203.0.113.9"); !v.Throttled() {
		t.Fatalf("Check(ip) = %+v, want throttled", v)
	}
}

func TestAuthFailuresQuietOnOrdinaryTraffic(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{AuthFailures: anomaly.AuthFailuresConfig{Max: 20}})
	// An expired token now and then: one 401 every 10 seconds for an hour,
	// among successful requests.
	for i := range 360 * 5 {
		status := 200
		if i%5 == 0 {
			status = 401
		}
		o := req("app", "u1", "", status)
		o.Time = clk.Now()
		d.Observe(o)
		clk.Advance(2 * time.Second)
	}
	if got := list(t, d); len(got) != 0 {
		t.Fatalf("occasional 401s raised %+v", got)
	}
}

func TestEventRules(t *testing.T) {
	d, clk, rec := newDetector(t, anomaly.Config{
		RefreshReuse: anomaly.EventConfig{Action: anomaly.ActionSuspend},
		Replay:       anomaly.EventConfig{Action: anomaly.ActionThrottle},
	})
	d.Observe(anomaly.Observation{Kind: anomaly.RefreshReuse, ClientID: "app", UserID: "u1", Time: clk.Now()})
	for range 100 { // a replay flood raises one anomaly per cooldown
		d.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: "app2", Detail: "dpop", Time: clk.Now()})
	}
	d.Observe(anomaly.Observation{Kind: anomaly.TokenInURL, ClientID: "app3", Detail: "a URL query", Time: clk.Now()})
	as := list(t, d)
	want := map[anomaly.Rule]anomaly.Subject{
		anomaly.RuleRefreshReuse: {Kind: anomaly.SubjectUser, ID: "u1"},
		anomaly.RuleReplay:       {Kind: anomaly.SubjectClient, ID: "app2"},
		anomaly.RuleTokenInURL:   {Kind: anomaly.SubjectClient, ID: "app3"},
	}
	if len(as) != len(want) {
		t.Fatalf("raised %d anomalies, want %d: %+v", len(as), len(want), as)
	}
	for _, a := range as {
		if want[a.Rule] != a.Subject {
			t.Errorf("%s about %v, want %v", a.Rule, a.Subject, want[a.Rule])
		}
	}
	if !d.Check("", "u1", "").Suspended() || !d.Check("app2", "", "").Throttled() || d.Check("app3", "", "").Action != anomaly.ActionRecord {
		t.Fatal("actions not applied per rule config")
	}
	waitFor(t, func() bool { return rec.count(anomaly.AuditRaised) == 3 })
}

func TestClearLiftsSuspensionAndIsAudited(t *testing.T) {
	d, clk, rec := newDetector(t, anomaly.Config{TokenInURL: anomaly.EventConfig{Action: anomaly.ActionSuspend}})
	d.Observe(anomaly.Observation{Kind: anomaly.TokenInURL, ClientID: "app", UserID: "u1", Time: clk.Now()})
	as := list(t, d)
	if len(as) != 1 || !d.Check("app", "u1", "").Suspended() {
		t.Fatalf("want one suspension, got %+v", as)
	}
	// Suspension without suspend_for lasts until cleared.
	clk.Advance(365 * 24 * time.Hour)
	if !d.Check("app", "u1", "").Suspended() {
		t.Fatal("suspension lapsed on its own")
	}
	if _, err := d.Clear(context.Background(), "nope", "admin"); !errors.Is(err, anomaly.ErrNotFound) {
		t.Fatalf("Clear(unknown) = %v, want ErrNotFound", err)
	}
	a, err := d.Clear(context.Background(), as[0].ID, "admin:alice")
	if err != nil || a.ClearedBy != "admin:alice" || a.ClearedAt.IsZero() {
		t.Fatalf("Clear = %+v, %v", a, err)
	}
	if d.Check("app", "u1", "").Suspended() {
		t.Fatal("still suspended after clear")
	}
	if active, _ := d.List(context.Background(), anomaly.ListOptions{}); len(active) != 0 {
		t.Fatalf("List without cleared = %+v", active)
	}
	waitFor(t, func() bool { return rec.count(anomaly.AuditCleared) == 1 })
	// After a clear the rule may fire again at once.
	d.Observe(anomaly.Observation{Kind: anomaly.TokenInURL, ClientID: "app", UserID: "u1", Time: clk.Now()})
	if !d.Check("app", "u1", "").Suspended() {
		t.Fatal("rule did not fire again after clear")
	}
	cleared, err := d.ClearSubject(context.Background(), anomaly.Subject{Kind: anomaly.SubjectUser, ID: "u1"}, "admin")
	if err != nil || len(cleared) != 1 || d.Check("app", "u1", "").Suspended() {
		t.Fatalf("ClearSubject = %+v, %v", cleared, err)
	}
}

func TestSuspendFor(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{SuspendFor: time.Hour, Replay: anomaly.EventConfig{Action: anomaly.ActionSuspend}})
	d.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: "app", Time: clk.Now()})
	if !d.Check("app", "", "").Suspended() {
		t.Fatal("not suspended")
	}
	clk.Advance(time.Hour)
	if d.Check("app", "", "").Suspended() {
		t.Fatal("suspension outlived suspend_for")
	}
}

func TestActiveStateLoadedFromStore(t *testing.T) {
	store := anomaly.NewMemory(0)
	_ = store.Add(context.Background(), &anomaly.Anomaly{ID: "x", Rule: anomaly.RuleReplay, Action: anomaly.ActionSuspend,
		Subject: anomaly.Subject{Kind: anomaly.SubjectClient, ID: "evil"}, RaisedAt: time.Now()})
	d, err := anomaly.New(anomaly.Options{Store: store, Auditor: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	if !d.Check("evil", "", "").Suspended() {
		t.Fatal("a suspension in the store is not enforced by a new detector")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []anomaly.Config{
		{RateSpike: anomaly.RateSpikeConfig{Action: "ban"}},
		{RateSpike: anomaly.RateSpikeConfig{Factor: 0.5}},
		{RateSpike: anomaly.RateSpikeConfig{Window: time.Hour, Baseline: time.Minute}},
		{SuspendFor: -time.Second},
	} {
		if err := c.Validate(); !errors.Is(err, anomaly.ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", c, err)
		}
		if _, err := anomaly.New(anomaly.Options{Config: c, Auditor: &recorder{}}); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	if _, err := anomaly.New(anomaly.Options{}); err == nil {
		t.Error("New accepted no Auditor")
	}
}

func TestNilDetectorIsInert(t *testing.T) {
	var d *anomaly.Detector
	d.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: "x"})
	if d.Check("x", "", "").Action != anomaly.ActionRecord {
		t.Fatal("nil detector reported an action")
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryStoreBounded(t *testing.T) {
	m := anomaly.NewMemory(10)
	ctx := context.Background()
	_ = m.Add(ctx, &anomaly.Anomaly{ID: "keep", Action: anomaly.ActionSuspend, Subject: anomaly.Subject{Kind: anomaly.SubjectClient, ID: "c"}, RaisedAt: t0})
	for i := range 100 {
		_ = m.Add(ctx, &anomaly.Anomaly{ID: fmt.Sprint(i), Action: anomaly.ActionRecord, RaisedAt: t0})
	}
	all, _ := m.List(ctx, anomaly.ListOptions{IncludeCleared: true})
	if len(all) != 10 {
		t.Fatalf("store holds %d, want 10", len(all))
	}
	active, _ := m.Active(ctx, t0)
	if len(active) != 1 || active[0].ID != "keep" {
		t.Fatalf("an active suspension was evicted: %+v", active)
	}
}

func TestConcurrentObserve(t *testing.T) {
	d, _, _ := newDetector(t, anomaly.Config{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				d.Observe(anomaly.Observation{Kind: anomaly.Request, ClientID: fmt.Sprint("c", g), UserID: fmt.Sprint("u", i%50),
					Patient: fmt.Sprint("p", i%7), IP: "10.0.0.1", Status: 200 + (i%3)*100})
				d.Check(fmt.Sprint("c", g), "", "")
			}
		})
	}
	wg.Wait()
	d.Sweep()
}

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

func BenchmarkObserve(b *testing.B) {
	d, err := anomaly.New(anomaly.Options{Auditor: &recorder{}})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close(context.Background())
	clients := make([]string, 64)
	for i := range clients {
		clients[i] = fmt.Sprint("client-", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			d.Observe(anomaly.Observation{Kind: anomaly.Request, ClientID: clients[i%64], UserID: "u", Patient: "p1", IP: "10.0.0.1", Status: 200})
			i++
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	d, _ := anomaly.New(anomaly.Options{Auditor: &recorder{}})
	defer d.Close(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Check("client", "user", "10.0.0.1")
		}
	})
}
