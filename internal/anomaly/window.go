package anomaly

import "time"

// ring counts events in fixed-width time buckets, the newest at head, so
// sums over recent spans slide with the clock one bucket at a time.
type ring struct {
	width  int64 // bucket width in nanoseconds
	counts []uint32
	head   int64 // absolute bucket number of the newest bucket
}

func newRing(width time.Duration, n int) *ring {
	if width <= 0 {
		width = time.Second
	}
	return &ring{width: int64(width), counts: make([]uint32, n)}
}

// advance moves head to the bucket of now, zeroing the buckets passed.
func (r *ring) advance(now time.Time) {
	b := now.UnixNano() / r.width
	if b <= r.head {
		return // same bucket, or a clock going backwards: count in head
	}
	n := int64(len(r.counts))
	if b-r.head >= n {
		clear(r.counts)
	} else {
		for i := r.head + 1; i <= b; i++ {
			r.counts[i%n] = 0
		}
	}
	r.head = b
}

// add counts one event at now.
func (r *ring) add(now time.Time) {
	r.advance(now)
	i := r.head % int64(len(r.counts))
	if r.counts[i] < ^uint32(0) {
		r.counts[i]++
	}
}

// sum adds the buckets from skip to skip+n-1 back from head (0 is head).
func (r *ring) sum(now time.Time, skip, n int) uint64 {
	r.advance(now)
	l := int64(len(r.counts))
	var s uint64
	for k := skip; k < skip+n && k < len(r.counts); k++ {
		s += uint64(r.counts[((r.head-int64(k))%l+l)%l])
	}
	return s
}
