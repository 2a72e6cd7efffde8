package session

import (
	"sync"
	"time"
)

// Throttle defaults.
const (
	DefaultMaxPerAccount = 5
	DefaultLockFor       = 15 * time.Minute
	DefaultMaxPerIP      = 20
	DefaultIPWindow      = 15 * time.Minute
	maxTracked           = 100_000
)

// Throttle counts failed sign-ins in process memory: per source IP in a
// sliding window, and per username for names that have no account (real
// accounts are counted in the store), so a lockout looks the same whether or
// not the account exists. The zero value is not usable; call NewThrottle.
type Throttle struct {
	maxPerAccount int
	lockFor       time.Duration
	maxPerIP      int
	ipWindow      time.Duration

	mu    sync.Mutex
	ips   map[string][]time.Time
	names map[string]*nameState
}

type nameState struct {
	failures    int
	last        time.Time
	lockedUntil time.Time
}

// ThrottleOptions configures a Throttle; zero fields take the defaults.
type ThrottleOptions struct {
	MaxPerAccount int           // failures that lock an account (5)
	LockFor       time.Duration // lock duration (15 min)
	MaxPerIP      int           // failures per IP in IPWindow (20)
	IPWindow      time.Duration // (15 min)
}

// NewThrottle returns a Throttle.
func NewThrottle(o ThrottleOptions) *Throttle {
	t := &Throttle{maxPerAccount: o.MaxPerAccount, lockFor: o.LockFor, maxPerIP: o.MaxPerIP, ipWindow: o.IPWindow,
		ips: map[string][]time.Time{}, names: map[string]*nameState{}}
	if t.maxPerAccount <= 0 {
		t.maxPerAccount = DefaultMaxPerAccount
	}
	if t.lockFor <= 0 {
		t.lockFor = DefaultLockFor
	}
	if t.maxPerIP <= 0 {
		t.maxPerIP = DefaultMaxPerIP
	}
	if t.ipWindow <= 0 {
		t.ipWindow = DefaultIPWindow
	}
	return t
}

// IPBlocked reports whether ip has reached its failure budget in the window.
func (t *Throttle) IPBlocked(ip string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.recentLocked(ip, now)) >= t.maxPerIP
}

// recentLocked prunes and returns ip's failures inside the window.
func (t *Throttle) recentLocked(ip string, now time.Time) []time.Time {
	fs := t.ips[ip]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= t.ipWindow {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(t.ips, ip)
		return nil
	}
	t.ips[ip] = fs
	return fs
}

// FailIP records a failed sign-in from ip.
func (t *Throttle) FailIP(ip string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fs := t.recentLocked(ip, now)
	if len(fs) >= t.maxPerIP {
		fs = fs[1:] // keep the slice bounded; the window stays full
	}
	if _, ok := t.ips[ip]; !ok && len(t.ips) >= maxTracked {
		t.pruneLocked(now)
	}
	t.ips[ip] = append(fs, now)
}

// NameLocked reports whether the (account-less) username is locked.
func (t *Throttle) NameLocked(name string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.names[name]
	return s != nil && now.Before(s.lockedUntil)
}

// FailName records a failure for an account-less username and reports
// whether it is now locked, mirroring storage.Users.RecordLoginFailure.
func (t *Throttle) FailName(name string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.names[name]
	if s == nil {
		if len(t.names) >= maxTracked {
			t.pruneLocked(now)
		}
		s = &nameState{}
		t.names[name] = s
	}
	s.failures++
	s.last = now
	if s.failures >= t.maxPerAccount {
		s.lockedUntil = now.Add(t.lockFor)
	}
	return now.Before(s.lockedUntil)
}

// pruneLocked drops state that no longer matters; if the tables are still
// full (a flood of distinct names or addresses), it drops arbitrary entries
// so memory stays bounded.
func (t *Throttle) pruneLocked(now time.Time) {
	for ip := range t.ips {
		t.recentLocked(ip, now)
	}
	for n, s := range t.names {
		if now.After(s.lockedUntil) && now.Sub(s.last) >= t.lockFor {
			delete(t.names, n)
		}
	}
	for n := range t.names {
		if len(t.names) < maxTracked {
			break
		}
		delete(t.names, n)
	}
	for ip := range t.ips {
		if len(t.ips) < maxTracked {
			break
		}
		delete(t.ips, ip)
	}
}
