// Package redis is an anomaly.Store in Redis, so that several fhirgate
// nodes enforce the same throttles and suspensions (each detector re-reads
// the in-force set every few seconds) and they survive a node restart.
//
// Keys under the prefix: a:<id> holds an anomaly as JSON; all is a sorted
// set of every id by raise time; active holds the ids of uncleared
// throttles and suspensions; s:<kind>:<id> holds the ids about a subject.
// Record-only and cleared anomalies expire after Retention.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/anomaly"
)

// Defaults.
const (
	DefaultPrefix    = "fhirgate:anomaly:"
	DefaultRetention = anomaly.DefaultRetention
)

// Store is the Redis anomaly.Store.
type Store struct {
	c         goredis.UniversalClient
	prefix    string
	retention time.Duration
}

// New returns a store on c; prefix and retention default to DefaultPrefix
// and DefaultRetention.
func New(c goredis.UniversalClient, prefix string, retention time.Duration) (*Store, error) {
	if c == nil {
		return nil, errors.New("anomaly/redis: nil client")
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{c: c, prefix: prefix, retention: retention}, nil
}

func (s *Store) key(id string) string                { return s.prefix + "a:" + id }
func (s *Store) subjectKey(x anomaly.Subject) string { return s.prefix + "s:" + x.String() }

// ttl is how long a stored anomaly is kept: for ever while it can be in
// force, Retention otherwise.
func (s *Store) ttl(a *anomaly.Anomaly) time.Duration {
	if a.Action != anomaly.ActionRecord && a.ClearedAt.IsZero() {
		if a.Until.IsZero() {
			return 0
		}
		return time.Until(a.Until) + s.retention
	}
	return s.retention
}

// Add implements anomaly.Store.
func (s *Store) Add(ctx context.Context, a *anomaly.Anomaly) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, s.key(a.ID), b, s.ttl(a))
		p.ZAdd(ctx, s.prefix+"all", goredis.Z{Score: float64(a.RaisedAt.UnixMicro()), Member: a.ID})
		p.SAdd(ctx, s.subjectKey(a.Subject), a.ID)
		if a.Action != anomaly.ActionRecord {
			p.SAdd(ctx, s.prefix+"active", a.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("anomaly/redis: add: %w", err)
	}
	return nil
}

// load reads ids; missing (expired) ones are returned in gone.
func (s *Store) load(ctx context.Context, ids []string) (found []anomaly.Anomaly, gone []string, err error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.key(id)
	}
	vals, err := s.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("anomaly/redis: read: %w", err)
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			gone = append(gone, ids[i])
			continue
		}
		var a anomaly.Anomaly
		if err := json.Unmarshal([]byte(str), &a); err != nil {
			return nil, nil, fmt.Errorf("anomaly/redis: decode %s: %w", ids[i], err)
		}
		found = append(found, a)
	}
	return found, gone, nil
}

// List implements anomaly.Store.
func (s *Store) List(ctx context.Context, opts anomaly.ListOptions) ([]anomaly.Anomaly, error) {
	if opts.Limit <= 0 {
		opts.Limit = anomaly.DefaultListLimit
	}
	var out []anomaly.Anomaly
	const page = 256
	for start := int64(0); len(out) < opts.Limit; start += page {
		ids, err := s.c.ZRevRange(ctx, s.prefix+"all", start, start+page-1).Result()
		if err != nil {
			return nil, fmt.Errorf("anomaly/redis: list: %w", err)
		}
		as, gone, err := s.load(ctx, ids)
		if err != nil {
			return nil, err
		}
		if len(gone) > 0 {
			s.c.ZRem(ctx, s.prefix+"all", toAny(gone)...)
			start -= int64(len(gone))
		}
		for _, a := range as {
			if len(out) == opts.Limit {
				break
			}
			if (!opts.IncludeCleared && !a.ClearedAt.IsZero()) || (opts.Subject.ID != "" && a.Subject != opts.Subject) {
				continue
			}
			out = append(out, a)
		}
		if len(ids) < page {
			break
		}
	}
	return out, nil
}

// Active implements anomaly.Store.
func (s *Store) Active(ctx context.Context, now time.Time) ([]anomaly.Anomaly, error) {
	ids, err := s.c.SMembers(ctx, s.prefix+"active").Result()
	if err != nil {
		return nil, fmt.Errorf("anomaly/redis: active: %w", err)
	}
	as, gone, err := s.load(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []anomaly.Anomaly
	for _, a := range as {
		if a.Active(now) {
			out = append(out, a)
		} else if !a.ClearedAt.IsZero() || (!a.Until.IsZero() && !now.Before(a.Until)) {
			gone = append(gone, a.ID)
		}
	}
	if len(gone) > 0 {
		s.c.SRem(ctx, s.prefix+"active", toAny(gone)...)
	}
	return out, nil
}

// Clear implements anomaly.Store. It is atomic: of concurrent clears, the
// first one's clearer and time are kept.
func (s *Store) Clear(ctx context.Context, id, by string, now time.Time) (*anomaly.Anomaly, error) {
	var out *anomaly.Anomaly
	key := s.key(id)
	err := s.c.Watch(ctx, func(tx *goredis.Tx) error {
		str, err := tx.Get(ctx, key).Result()
		if errors.Is(err, goredis.Nil) {
			return fmt.Errorf("%w: %q", anomaly.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		var a anomaly.Anomaly
		if err := json.Unmarshal([]byte(str), &a); err != nil {
			return err
		}
		out = &a
		if !a.ClearedAt.IsZero() {
			return nil
		}
		a.ClearedAt, a.ClearedBy = now, by
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, key, b, s.ttl(&a))
			p.SRem(ctx, s.prefix+"active", id)
			return nil
		})
		return err
	}, key)
	if err != nil {
		if errors.Is(err, anomaly.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("anomaly/redis: clear: %w", err)
	}
	return out, nil
}

// ClearSubject implements anomaly.Store.
func (s *Store) ClearSubject(ctx context.Context, x anomaly.Subject, by string, now time.Time) ([]anomaly.Anomaly, error) {
	ids, err := s.c.SMembers(ctx, s.subjectKey(x)).Result()
	if err != nil {
		return nil, fmt.Errorf("anomaly/redis: clear subject: %w", err)
	}
	var out []anomaly.Anomaly
	for _, id := range ids {
		before, gone, err := s.load(ctx, []string{id})
		if err != nil {
			return nil, err
		}
		if len(gone) > 0 {
			s.c.SRem(ctx, s.subjectKey(x), id)
			continue
		}
		if !before[0].ClearedAt.IsZero() {
			continue
		}
		a, err := s.Clear(ctx, id, by, now)
		if errors.Is(err, anomaly.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
