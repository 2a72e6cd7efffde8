package anomaly

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DefaultMemoryMax bounds the anomalies a Memory store keeps.
const DefaultMemoryMax = 10_000

// Memory is an in-process Store. When full it forgets the oldest anomaly
// that is not in force.
type Memory struct {
	mu  sync.Mutex
	max int
	all []Anomaly // oldest first
}

// NewMemory returns an empty store keeping at most max anomalies
// (DefaultMemoryMax when max <= 0).
func NewMemory(max int) *Memory {
	if max <= 0 {
		max = DefaultMemoryMax
	}
	return &Memory{max: max}
}

// Add implements Store.
func (m *Memory) Add(_ context.Context, a *Anomaly) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.all) >= m.max {
		drop := 0
		for i, x := range m.all {
			if !x.Active(a.RaisedAt) {
				drop = i
				break
			}
		}
		m.all = append(m.all[:drop], m.all[drop+1:]...)
	}
	m.all = append(m.all, *a)
	return nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, opts ListOptions) ([]Anomaly, error) {
	if opts.Limit <= 0 {
		opts.Limit = DefaultListLimit
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Anomaly
	for i := len(m.all) - 1; i >= 0 && len(out) < opts.Limit; i-- {
		a := m.all[i]
		if !opts.IncludeCleared && !a.ClearedAt.IsZero() {
			continue
		}
		if opts.Subject.ID != "" && a.Subject != opts.Subject {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// Active implements Store.
func (m *Memory) Active(_ context.Context, now time.Time) ([]Anomaly, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Anomaly
	for _, a := range m.all {
		if a.Active(now) {
			out = append(out, a)
		}
	}
	return out, nil
}

// Clear implements Store.
func (m *Memory) Clear(_ context.Context, id, by string, now time.Time) (*Anomaly, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.all {
		if m.all[i].ID == id {
			if m.all[i].ClearedAt.IsZero() {
				m.all[i].ClearedAt, m.all[i].ClearedBy = now, by
			}
			a := m.all[i]
			return &a, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
}

// ClearSubject implements Store.
func (m *Memory) ClearSubject(_ context.Context, s Subject, by string, now time.Time) ([]Anomaly, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Anomaly
	for i := range m.all {
		if m.all[i].Subject == s && m.all[i].ClearedAt.IsZero() {
			m.all[i].ClearedAt, m.all[i].ClearedBy = now, by
			out = append(out, m.all[i])
		}
	}
	return out, nil
}
