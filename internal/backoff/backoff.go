// Package backoff paces retries: a delay that starts small, doubles with
// every failed try up to a ceiling and returns to the start after a success,
// spread by jitter so that a fleet that lost Redis does not come back in
// lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the delay before the next try. It is not safe for concurrent
// use: each retry loop keeps its own.
type Backoff struct {
	initial, max, cur time.Duration
}

// New returns a Backoff that starts at initial and doubles up to max.
func New(initial, max time.Duration) *Backoff {
	return &Backoff{initial: initial, max: max, cur: initial}
}

// Delay is what the next Sleep or Next waits, before jitter. Loggers report
// it.
func (b *Backoff) Delay() time.Duration { return b.cur }

// Next returns the delay to wait now, without jitter, and doubles the next
// one (up to max).
func (b *Backoff) Next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return d
}

// Sleep waits Jitter(Next()), or until ctx ends.
func (b *Backoff) Sleep(ctx context.Context) {
	t := time.NewTimer(Jitter(b.Next()))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Reset returns the delay to its initial value, after a try succeeded.
func (b *Backoff) Reset() { b.cur = b.initial }

// Jitter spreads d by ±20% so that many processes waiting the same time do
// not all act at the same moment.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d*8/10 + time.Duration(rand.Int64N(int64(d)*4/10+1))
}
