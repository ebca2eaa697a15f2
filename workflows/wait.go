package workflows

import (
	"context"
	"errors"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
	"github.com/runfleet/runfleet/queue"
)

// DefaultWaitFallback is how often Wait reads a job when no event arrives.
const DefaultWaitFallback = 5 * time.Second

const (
	// waitBlock bounds one blocking read of a job's events, so a read is
	// never older than this when the fallback read falls due.
	waitBlock = time.Second
	// waitUpdateEvery is the least time between two reads of the job for
	// progress and task-count events; a state change is read at once.
	waitUpdateEvery = 100 * time.Millisecond
	// waitTrail is when a read prompted by events is followed by one more:
	// a commit adds no task-count event within 250 ms of the job's last
	// event (EVENT_TICK_MS in runfleet.lua), so the counts it changed show
	// by then.
	waitTrail = 300 * time.Millisecond
	// waitRetryFor is how long Wait retries a Redis that does not answer
	// (a restart, a failover) before it returns the error.
	waitRetryFor = 30 * time.Second
	// waitEventBatch is the most events taken from the stream per read.
	waitEventBatch = 64
)

// Wait blocks until the job is completed, failed or canceled and returns it,
// or returns ctx's error with the job as last read.
//
// It does not poll: the Redis call that changes the job also adds an event
// to the job's event stream, which Wait reads with a blocking XREAD, so it
// returns within milliseconds of the job's end. onUpdate (if set) is called
// with the job as first read and after each change: a new state at once,
// progress and task counts at most every 100 ms.
//
// every is the fallback: how often the job is read anyway when no event
// arrives (events lost to a Redis restart without persistence, for
// instance); 0 means DefaultWaitFallback. An archived job is read from its
// archive. Redis errors are retried for up to 30 s; a job that does not
// exist is ErrJobNotFound at once. While it waits, Wait holds one
// connection of the client's pool; a canceled ctx returns at once, and the
// connection is freed within a second.
func (jc *JobClient) Wait(ctx context.Context, id string, every time.Duration, onUpdate func(Job)) (Job, error) {
	if every <= 0 {
		every = DefaultWaitFallback
	}
	w := &jobWatch{jc: jc, id: id, every: every}
	var j Job
	for {
		next, last, err := w.read(ctx)
		if err != nil {
			return j, err
		}
		j = next
		if onUpdate != nil {
			onUpdate(j)
		}
		if Finished(j.State) {
			return j, nil
		}
		if err := w.next(ctx, last); err != nil {
			return j, err
		}
	}
}

// jobWatch is one Wait: it reads the job, then waits on its events.
type jobWatch struct {
	jc    *JobClient
	id    string
	every time.Duration
	// readAt is when the job was last read.
	readAt time.Time
	// trail is set when that read was prompted by events: one more read
	// follows waitTrail later unless another event comes first.
	trail bool
	// pause is how long to wait after a failed event read before the job
	// is read again; it doubles up to every while reads keep failing (an
	// ACL without XREAD, say), so Wait then polls at every.
	pause time.Duration
}

// read reads the job and its newest event id, retrying Redis errors for up
// to waitRetryFor. A job gone from Redis is read from its archive.
func (w *jobWatch) read(ctx context.Context) (Job, string, error) {
	var failing time.Time
	retry := backoff.New(50*time.Millisecond, time.Second)
	for {
		j, last, err := w.jc.c.q.WatchJob(ctx, w.id)
		w.readAt = time.Now()
		switch {
		case err == nil:
			return j, last, nil
		case ctx.Err() != nil:
			return Job{}, "", ctx.Err()
		case errors.Is(err, queue.ErrJobNotFound):
			j, err := w.jc.getJob(ctx, w.id)
			return j, queue.NoEvent, err
		}
		if failing.IsZero() {
			failing = time.Now()
		} else if time.Since(failing) > waitRetryFor {
			return Job{}, "", err
		}
		if err := pauseCtx(ctx, retry.Next()); err != nil {
			return Job{}, "", err
		}
	}
}

// next returns once the job should be read again: a state event arrived,
// progress or task-count events arrived and waitUpdateEvery has passed
// since the last read, the trailing read after events falls due, the
// fallback interval passed, or reading events failed. Only ctx's end is an
// error.
func (w *jobWatch) next(ctx context.Context, last string) error {
	fallback := w.readAt.Add(w.every)
	var due time.Time // set once an update event is waiting to be read
	if w.trail {
		due = w.readAt.Add(waitTrail)
	}
	w.trail = false
	for {
		until := fallback
		if !due.IsZero() && due.Before(until) {
			until = due
		}
		block := min(waitBlock, time.Until(until))
		if block < time.Millisecond {
			return nil
		}
		evs, err := w.events(ctx, last, block)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if w.pause == 0 {
				w.pause = 100 * time.Millisecond
			} else {
				w.pause = min(2*w.pause, w.every)
			}
			return pauseCtx(ctx, min(w.pause, time.Until(fallback)))
		}
		w.pause = 0
		if len(evs) == 0 {
			continue
		}
		w.trail = true
		for _, e := range evs {
			if e.Kind == queue.EventState {
				return nil
			}
			last = e.ID
		}
		if upd := w.readAt.Add(waitUpdateEvery); due.IsZero() || upd.Before(due) {
			due = upd
		}
	}
}

// events is one blocking read of the job's events. It returns as soon as
// ctx ends; the read itself ends when block passes.
func (w *jobWatch) events(ctx context.Context, last string, block time.Duration) ([]queue.JobEvent, error) {
	type result struct {
		evs []queue.JobEvent
		err error
	}
	done := make(chan result, 1)
	go func() {
		evs, err := w.jc.c.q.JobEvents(ctx, w.id, last, waitEventBatch, block)
		done <- result{evs, err}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-done:
		return r.evs, r.err
	}
}

// pauseCtx waits d, or returns ctx's error once it ends.
func pauseCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
